package main

import (
	"log/slog"

	"github.com/alecthomas/kingpin/v2"
	"github.com/prometheus/common/promslog"
	promslogflag "github.com/prometheus/common/promslog/flag"
	"github.com/prometheus/common/version"
)

// logConfig holds the --log.level and --log.format flags, shared by every
// subcommand as Prometheus does.
type logConfig struct{ cfg *promslog.Config }

func registerLogFlags(app *kingpin.Application) *logConfig {
	c := &logConfig{cfg: &promslog.Config{}}
	promslogflag.AddFlags(app, c.cfg)
	return c
}

func (c *logConfig) logger() *slog.Logger { return promslog.New(c.cfg) }

func versionString() string { return version.Print("omen") }
