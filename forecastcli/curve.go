package forecastcli

import (
	"fmt"

	"github.com/omen-sidecar/omen/forecast"
)

// forecaster is what File streams a file's rows through: update takes
// each row in time order, forecast the forecast after the last.
type forecaster interface {
	update(t int64, v float64)
	forecast() ([]forecast.Point, error)
}

// curve is the forecast package's Model on the raw rows (Config.Steps).
type curve struct {
	m     *forecast.Model
	steps int
}

func newCurve(cfg Config) (*curve, error) {
	m, err := forecast.New(cfg.curveOptions())
	if err != nil {
		return nil, err
	}
	return &curve{m: m, steps: cfg.Steps}, nil
}

func (c *curve) update(t int64, v float64) { c.m.Update(t, v) }

func (c *curve) forecast() ([]forecast.Point, error) {
	if !c.m.Ready() {
		return nil, fmt.Errorf("%d usable samples, need at least %d to forecast", c.m.Count(), c.m.Options().MinSamples)
	}
	return c.m.Forecast(nil, c.steps), nil
}
