package main

import (
	"context"
	"fmt"
	"io"
	"os"

	"github.com/alecthomas/kingpin/v2"

	"github.com/omen-sidecar/omen/config"
	"github.com/omen-sidecar/omen/rules"
)

// registerRules registers `omen rules generate`: print the Prometheus rule
// file derived from the configuration's alerting section.
func registerRules(app *kingpin.Application, lc *logConfig) command {
	cl := app.Command("rules", "Prometheus rules derived from omen's configuration.")
	gen := cl.Command("generate", "Print the alerting and recording rules for omen's configuration as a Prometheus rule file; warnings on what is probably not meant (a capacity ceiling of 0) go to stderr.")
	cfgFile := gen.Flag("config.file", "omen configuration file; without it the defaults are used.").String()
	return command{clause: gen, run: func(ctx context.Context) error {
		return generateRules(os.Stdout, os.Stderr, *cfgFile)
	}}
}

// generateRules prints the rules for the configuration in cfgFile (the
// defaults if empty) on out, and rules' warnings on it on errOut.
func generateRules(out, errOut io.Writer, cfgFile string) error {
	cfg := config.Default()
	if cfgFile != "" {
		var err error
		if cfg, err = config.LoadFile(cfgFile); err != nil {
			return err
		}
	}
	b, err := rules.Render(cfg)
	if err != nil {
		return err
	}
	for _, w := range rules.Warnings(cfg) {
		fmt.Fprintf(errOut, "warning: %s\n", w)
	}
	if _, err := out.Write(b); err != nil {
		return fmt.Errorf("write rules: %w", err)
	}
	return nil
}
