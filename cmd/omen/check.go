package main

import (
	"context"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"time"

	"github.com/alecthomas/kingpin/v2"
	promcommon "github.com/prometheus/common/config"
	"github.com/prometheus/common/model"

	"github.com/omen-sidecar/omen/config"
	"github.com/omen-sidecar/omen/forward"
	"github.com/omen-sidecar/omen/internal/livefc"
	"github.com/omen-sidecar/omen/pipeline"
	"github.com/omen-sidecar/omen/rules"
)

// registerCheck adds `omen check config`: the configuration files a start
// or a reload would refuse, found before they are deployed, as `promtool
// check config` finds Prometheus's. Without it, a typo in a ConfigMap was
// found by the reload that kept the old configuration.
func registerCheck(app *kingpin.Application, _ *logConfig) command {
	cl := app.Command("check", "Check omen's files.")
	cfg := cl.Command("config", "Check configuration files (--config.file) as a start or a reload reads them: syntax, selectors, PromQL, remote_write and remote_read with the TLS files they name, and the rules omen rules generate makes of them; and, as promtool does, their secret files (password_file, credentials_file, client_secret_file), which a start takes though every request fails until they are there. Exits 1 if any is refused.")
	syntaxOnly := cfg.Flag("syntax-only", "Check only what the files themselves say, not the files they name (TLS and secret files) nor remote_write entries given twice: for a CI job without the Secrets a pod mounts. As promtool's.").Bool()
	files := cfg.Arg("config-files", "The configuration files to check.").Required().Strings()
	return command{clause: cfg, run: func(context.Context) error {
		if failed := checkConfigs(os.Stdout, os.Stderr, *files, *syntaxOnly); failed > 0 {
			return fmt.Errorf("%d of %d files refused", failed, len(*files))
		}
		return nil
	}}
}

// checkConfigs checks each file, saying so on out, or why not on errOut as
// promtool does, and returns how many were refused. syntaxOnly checks what
// loading the file checks (syntax, keys, selectors, PromQL, names) and the
// rules generated from it, not the clients made of it, which read the
// files it names.
func checkConfigs(out, errOut io.Writer, files []string, syntaxOnly bool) int {
	failed := 0
	for _, f := range files {
		fmt.Fprintf(out, "Checking %s\n", f)
		c, err := config.LoadFile(f)
		if err == nil {
			// What `omen rules generate` makes of it, from the file
			// alone: a capacity alert no forecast horizon serves passed
			// here and failed the generation after it.
			if _, rerr := rules.Render(c); rerr != nil {
				err = fmt.Errorf("config %s: rules: %w", f, rerr)
			}
		}
		if err == nil && !syntaxOnly {
			// What a start or a reload applies after loading: the
			// remote writes' clients (a ca_file not there yet).
			err = forward.Check(c.RemoteWrite)
		}
		if err == nil && !syntaxOnly {
			// The warm start's client (its TLS files).
			err = pipeline.CheckUpstream(c.RemoteRead)
		}
		if err == nil && !syntaxOnly {
			err = checkSecretFiles(c)
		}
		if err != nil {
			fmt.Fprintf(errOut, "  FAILED: %v\n", err)
			failed++
			continue
		}
		// Valid, and what is probably not meant, as promtool warns.
		for _, w := range slices.Concat(rules.Warnings(c), horizonWarnings(c)) {
			fmt.Fprintf(errOut, "  WARNING: %s\n", w)
		}
		fmt.Fprintf(out, "  SUCCESS: %s is a valid omen configuration file: %d include, %d exclude, %d overrides, %d derived, %d remote_write, %d remote_read\n",
			f, len(c.Include), len(c.Exclude), len(c.Overrides), len(c.Derived), len(c.RemoteWrite), len(c.RemoteRead))
	}
	return failed
}

// firstForecastWarn is how long a selection's first forecast may wait for
// samples before `omen check config` warns: the default
// --storage.tsdb.retention.time.
const firstForecastWarn = 15 * 24 * time.Hour

// horizonWarnings names the selections whose first forecast waits for
// more than firstForecastWarn of samples. A forecaster steps at least a
// 64th of its longest horizon and forecasts after MinSamples steps (192
// for a horizon of 4h12m or more: three times the horizon), so a 1y
// horizon passed and forecast nothing for three years, without a word.
func horizonWarnings(c *config.Config) []string {
	var out []string
	check := func(where string, hs []model.Duration) {
		if len(hs) == 0 {
			return
		}
		longest := time.Duration(slices.Max(hs))
		step := livefc.MinStep(longest)
		n := livefc.OptionsFor(step, longest).MinSamples
		if wait := time.Duration(int64(n)*step) * time.Millisecond; wait > firstForecastWarn {
			out = append(out, fmt.Sprintf("%s.forecast_horizons: the first forecasts at %s come after %s of samples (%d steps of %s); the TSDB keeps %s by default (--storage.tsdb.retention.time)",
				where, model.Duration(longest), model.Duration(wait), n, model.Duration(time.Duration(step)*time.Millisecond), model.Duration(firstForecastWarn)))
		}
	}
	check("defaults", c.Defaults.ForecastHorizons)
	// Those inheriting the defaults' horizons are warned of there.
	inherited := func(hs []model.Duration) bool { return slices.Equal(hs, c.Defaults.ForecastHorizons) }
	for i, o := range c.Overrides {
		if !inherited(o.ForecastHorizons) {
			check(fmt.Sprintf("overrides[%d]", i), o.ForecastHorizons)
		}
	}
	for i, d := range c.Derived {
		if !inherited(d.ForecastHorizons) {
			check(fmt.Sprintf("derived[%d]", i), d.ForecastHorizons)
		}
	}
	return out
}

// checkSecretFiles fails on a secret file (password_file, credentials_file,
// client_secret_file) of a remote_write or remote_read entry that is not
// there. A start and a reload take it, as Prometheus's do: it is read at
// each request, so a Secret mounted later or rotated is used then. But
// until it is there every request fails (every forwarded output retried
// and in the end dropped, every warm start refused), and `promtool check
// config` refuses a scrape's missing credentials_file for that reason. It
// was checked for remote_read only, and a remote_write's passed.
func checkSecretFiles(c *config.Config) error {
	check := func(where string, hc promcommon.HTTPClientConfig) error {
		files := map[string]string{}
		if hc.BasicAuth != nil {
			files["basic_auth.password_file"] = hc.BasicAuth.PasswordFile
		}
		if hc.Authorization != nil {
			files["authorization.credentials_file"] = hc.Authorization.CredentialsFile
		}
		if hc.OAuth2 != nil {
			files["oauth2.client_secret_file"] = hc.OAuth2.ClientSecretFile
		}
		for _, k := range slices.Sorted(maps.Keys(files)) {
			if files[k] == "" {
				continue
			}
			if _, err := os.Stat(files[k]); err != nil {
				return fmt.Errorf("%s.%s: %w (read at each request: a start takes it, and every request fails until it is there)", where, k, err)
			}
		}
		return nil
	}
	for i, rw := range c.RemoteWrite {
		if err := check(fmt.Sprintf("remote_write[%d]", i), rw.HTTPClientConfig); err != nil {
			return err
		}
	}
	for i, rr := range c.RemoteRead {
		if err := check(fmt.Sprintf("remote_read[%d]", i), rr.HTTPClientConfig); err != nil {
			return err
		}
	}
	return nil
}
