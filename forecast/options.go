package forecast

import (
	"errors"
	"fmt"
	"math"
)

// Options configures a Model. The zero value of a field means its default
// (see DefaultOptions); Validate fills them in.
type Options struct {
	// Coverage is the nominal coverage of the prediction interval, in (0, 1).
	// Default 0.95.
	Coverage float64
	// MaxHorizon is the longest horizon, in samples, that Forecast serves
	// and that the validation measures errors for. Default 48.
	MaxHorizon int
	// History is the number of most recent samples the model keeps and fits
	// on. It bounds the memory of a series. Default 1024.
	History int
	// MinSamples is the number of samples before the model is Ready.
	// Default 2·MaxHorizon+32, at least 64.
	MinSamples int
	// RefitEvery is the number of new samples after which the next Forecast
	// re-estimates the parameters, seasons and combination weights.
	// Between refits every model is advanced by its O(1) recursion.
	// Default 24.
	RefitEvery int
	// MaxPeriod is the longest season searched, in samples. Default History/2.
	MaxPeriod int
}

// DefaultOptions returns the defaults.
func DefaultOptions() Options {
	o := Options{}
	_ = o.fill()
	return o
}

// fill sets zero fields to their defaults and reports nonsense.
func (o *Options) fill() error {
	if o.Coverage == 0 {
		o.Coverage = 0.95
	}
	if o.MaxHorizon == 0 {
		o.MaxHorizon = 48
	}
	if o.History == 0 {
		o.History = 1024
	}
	if o.MinSamples == 0 {
		o.MinSamples = max(64, 2*o.MaxHorizon+32)
	}
	if o.RefitEvery == 0 {
		o.RefitEvery = 24
	}
	if o.MaxPeriod == 0 {
		o.MaxPeriod = o.History / 2
	}
	var errs []error
	if math.IsNaN(o.Coverage) || o.Coverage <= 0 || o.Coverage >= 1 {
		errs = append(errs, fmt.Errorf("coverage %v: want a value in (0, 1)", o.Coverage))
	}
	if o.MaxHorizon < 1 || o.MaxHorizon > 1<<16 {
		errs = append(errs, fmt.Errorf("max horizon %d: want 1..65536", o.MaxHorizon))
	}
	if o.History < 32 || o.History > 1<<20 {
		errs = append(errs, fmt.Errorf("history %d: want 32..1048576 samples", o.History))
	}
	if o.MinSamples < 16 || o.MinSamples > o.History {
		errs = append(errs, fmt.Errorf("min samples %d: want 16..history (%d)", o.MinSamples, o.History))
	}
	// Upper bounds too: a Model holds History+RefitEvery values, and
	// UnmarshalBinary takes the options from its input.
	if o.RefitEvery < 1 || o.RefitEvery > 1<<20 {
		errs = append(errs, fmt.Errorf("refit every %d: want 1..1048576", o.RefitEvery))
	}
	if o.MaxPeriod < 2 || o.MaxPeriod > o.History {
		errs = append(errs, fmt.Errorf("max period %d: want 2..history (%d)", o.MaxPeriod, o.History))
	}
	return errors.Join(errs...)
}

// Validate reports whether o, with zero fields taken as their defaults, is
// usable. It does not modify o.
func (o Options) Validate() error {
	return o.fill()
}
