// Package forecast forecasts one series at a time with prediction
// intervals, streaming: a Model takes samples with Update and serves
// Forecast for any horizon up to Options.MaxHorizon.
//
// Per series it keeps the last History samples and a pool of candidate
// models for the seasons that detect's FFT seasonality finds (a main one,
// and a longer multiple of it such as weekly over daily):
//
//   - Holt–Winters with a damped trend and one or two seasons (holtwinters.go),
//     additive, and multiplicative through the log scale;
//   - multi-seasonal Fourier regression with a damped level correction (fourier.go);
//   - the Theta method on seasonally adjusted data (theta.go);
//   - seasonal naive, the floor, and with one season the seasonal random
//     walk of the differences, last season's course from the latest value
//     (snaive.go);
//
// each offered on the log scale and on the value scale when the series is
// positive (rawscale.go). Their parameters are fitted to multi-step errors,
// and rolling-origin validation on the series' own recent history weighs
// them per horizon (ensemble.go): the five with the smallest errors, by
// error^-8. The prediction interval at each horizon comes from the
// empirical quantiles of the combination's validation errors around that
// horizon, with the split-conformal finite-sample correction, not from a
// Gaussian assumption.
//
// Update is O(1) and allocation-free; the refit (seasons, validation, fits)
// runs in the first Forecast after RefitEvery new samples and costs
// O(History) — tens of milliseconds for 1024 samples — amortised over those
// samples. A Model's memory is bounded by History and the longest season.
//
// Measured figures: docs/benchmarks.md, section "Forecasting: M4 Hourly".
package forecast
