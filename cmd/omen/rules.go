package main

import (
	"context"
	"fmt"
	"os"

	"github.com/alecthomas/kingpin/v2"

	"github.com/omen-sidecar/omen/config"
	"github.com/omen-sidecar/omen/rules"
)

// registerRules registers `omen rules generate`: print the Prometheus rule
// file derived from the configuration's alerting section.
func registerRules(app *kingpin.Application, lc *logConfig) command {
	cl := app.Command("rules", "Prometheus rules derived from omen's configuration.")
	gen := cl.Command("generate", "Print the alerting and recording rules for omen's configuration as a Prometheus rule file.")
	cfgFile := gen.Flag("config.file", "omen configuration file; without it the defaults are used.").String()
	return command{clause: gen, run: func(ctx context.Context) error {
		cfg := config.Default()
		if *cfgFile != "" {
			var err error
			if cfg, err = config.LoadFile(*cfgFile); err != nil {
				return err
			}
		}
		b, err := rules.Render(cfg)
		if err != nil {
			return err
		}
		if _, err := os.Stdout.Write(b); err != nil {
			return fmt.Errorf("write rules: %w", err)
		}
		return nil
	}}
}
