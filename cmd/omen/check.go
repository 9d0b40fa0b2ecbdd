package main

import (
	"context"
	"fmt"
	"io"
	"os"

	"github.com/alecthomas/kingpin/v2"

	"github.com/omen-sidecar/omen/config"
	"github.com/omen-sidecar/omen/forward"
	"github.com/omen-sidecar/omen/pipeline"
)

// registerCheck adds `omen check config`: the configuration files a start
// or a reload would refuse, found before they are deployed, as `promtool
// check config` finds Prometheus's. Without it, a typo in a ConfigMap was
// found by the reload that kept the old configuration.
func registerCheck(app *kingpin.Application, _ *logConfig) command {
	cl := app.Command("check", "Check omen's files.")
	cfg := cl.Command("config", "Check configuration files (--config.file) as a start or a reload reads them: syntax, selectors, PromQL, remote_write with the TLS files it names (a password_file is read at each request, as in Prometheus), and remote_read with its TLS and secret files. Exits 1 if any is refused.")
	files := cfg.Arg("config-files", "The configuration files to check.").Required().Strings()
	return command{clause: cfg, run: func(context.Context) error {
		if failed := checkConfigs(os.Stdout, os.Stderr, *files); failed > 0 {
			return fmt.Errorf("%d of %d files refused", failed, len(*files))
		}
		return nil
	}}
}

// checkConfigs checks each file, saying so on out, or why not on errOut as
// promtool does, and returns how many were refused.
func checkConfigs(out, errOut io.Writer, files []string) int {
	failed := 0
	for _, f := range files {
		fmt.Fprintf(out, "Checking %s\n", f)
		c, err := config.LoadFile(f)
		if err == nil {
			// What a start or a reload applies after loading: the
			// remote writes' clients (a ca_file not there yet).
			err = forward.Check(c.RemoteWrite)
		}
		if err == nil {
			// The warm start's client, and the secret files it reads
			// at each request.
			err = pipeline.CheckUpstream(c.RemoteRead)
		}
		if err != nil {
			fmt.Fprintf(errOut, "  FAILED: %v\n", err)
			failed++
			continue
		}
		fmt.Fprintf(out, "  SUCCESS: %s is a valid omen configuration file: %d include, %d exclude, %d overrides, %d derived, %d remote_write, %d remote_read\n",
			f, len(c.Include), len(c.Exclude), len(c.Overrides), len(c.Derived), len(c.RemoteWrite), len(c.RemoteRead))
	}
	return failed
}
