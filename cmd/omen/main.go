// Command omen is a Prometheus sidecar that scores and forecasts the series
// Prometheus remote-writes to it.
//
// main only wires components: every subcommand lives in a file of its own
// that registers its flags and returns the function that runs it.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/alecthomas/kingpin/v2"
)

// command is one subcommand: run is called with a context that is cancelled
// on SIGINT or SIGTERM.
type command struct {
	clause *kingpin.CmdClause
	run    func(ctx context.Context) error
}

func main() {
	os.Exit(runMain(os.Args[1:]))
}

func runMain(args []string) int {
	app := kingpin.New("omen", "Anomaly detection and forecasting sidecar for Prometheus.")
	app.Version(versionString())
	app.HelpFlag.Short('h')
	logCfg := registerLogFlags(app)

	cmds := []command{
		registerServe(app, logCfg),
		registerBacktest(app, logCfg),
		registerForecast(app, logCfg),
		registerRules(app, logCfg),
		registerCheck(app, logCfg),
		registerLoadgen(app, logCfg),
	}
	selected, err := app.Parse(args)
	if err != nil {
		fmt.Fprintf(os.Stderr, "omen: %v\n", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	for _, c := range cmds {
		if c.clause != nil && c.clause.FullCommand() == selected {
			if err := c.run(ctx); err != nil {
				if selected == "serve" {
					// The server's reason to stop goes where its
					// logs go, in their format (a plain line after
					// JSON ones escaped log pipelines and alerts on
					// level=error), as Prometheus's does.
					logCfg.logger().Error("omen serve stopped on an error", "err", err)
					if errors.As(err, new(badConfigError)) {
						return 2
					}
					return 1
				}
				fmt.Fprintf(os.Stderr, "omen %s: %v\n", selected, err)
				return 1
			}
			return 0
		}
	}
	fmt.Fprintf(os.Stderr, "omen: unknown command %q\n", selected)
	return 2
}

// badConfigError is a --config.file a start refuses: exit code 2, as
// Prometheus's start gives on a configuration that does not load (and
// kingpin on a flag refused), where 1 is a failure at the work.
type badConfigError struct{ error }

func (e badConfigError) Unwrap() error { return e.error }
