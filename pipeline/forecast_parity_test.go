package pipeline

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
	"github.com/stretchr/testify/require"

	"github.com/omen-sidecar/omen/csvio"
	"github.com/omen-sidecar/omen/detect"
	"github.com/omen-sidecar/omen/forecastcli"
)

// TestForecastAsLive: `omen forecast` over a gauge's samples written as CSV
// (15 s samples over two days with a daily cycle, as a Grafana export)
// gives, for each horizon, the forecast and band omen serve stored for the
// file's last row: what a user tries on an export is what they would get
// live. At 002b6a6 it fitted the raw rows with forecast's defaults: 5m
// forecast 100.507 where live stored 100.655.
func TestForecastAsLive(t *testing.T) {
	const n = 2 * 24 * 3600 * 1000 / stepMs // two days
	r := rand.New(rand.NewPCG(11, 2))
	vs := make([]float64, n)
	for i := range vs {
		day := 2 * math.Pi * float64(int64(i)*stepMs) / float64(24*time.Hour.Milliseconds())
		vs[i] = 100 + 30*math.Sin(day) + 0.01*float64(i)/240 + 2*r.NormFloat64()
	}
	// With a glitch 10 minutes before the end (1e3 on a series near 100),
	// which the default detector scores above 1 and the forecaster learns
	// as the end of its band; one scoring only drops does not score it.
	glitched := slices.Clone(vs)
	glitched[n-1-40] += 1e3
	down := detect.DefaultOptions()
	down.Direction = detect.Down
	for _, tc := range []struct {
		name     string
		horizons []time.Duration
		// scoring is the selection's detector options, and det the
		// same as omen forecast's --detect.* flags set them.
		scoring string
		det     detect.Options
		glitch  bool
	}{
		{"default horizons", []time.Duration{5 * time.Minute, 15 * time.Minute, 30 * time.Minute}, "", detect.Options{}, false},
		{"capacity horizon", []time.Duration{4 * time.Hour}, "", detect.Options{}, false},
		// A glitch the default detector scores, and so clips in what
		// the forecaster learns, and a selection's does not.
		{"direction down, a glitch", []time.Duration{5 * time.Minute, 15 * time.Minute, 30 * time.Minute}, "  direction: down\n", down, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hs := make([]string, len(tc.horizons))
			for i, h := range tc.horizons {
				hs[i] = model.Duration(h).String()
			}
			cfg := loadf(t, "defaults:\n  forecast_horizons: [%s]\n%s", strings.Join(hs, ", "), tc.scoring)
			e := newEnv(t, "", cfg, nil)
			ls := labels.FromStrings("__name__", "temperature", "job", "a")
			vs := vs
			if tc.glitch {
				vs = glitched
			}
			e.feed(ls, model.MetricTypeGauge, vs)

			// The latest forecast stored live, and the rows up to it.
			live := map[string]float64{} // family/horizon: value
			var made int64
			for _, h := range hs {
				for _, fam := range fcFamilies {
					ts, v := latestOutput(t, e, fam, h)
					require.NotZero(t, ts, "%s{horizon=%s} stored", fam, h)
					made = max(made, ts)
					live[fam+"/"+h] = v
				}
			}
			last := int((made - t0.UnixMilli()) / stepMs)
			require.Greater(t, last, n-n/100, "a forecast stored at the end")
			// The live forecaster's band floors, each calibrated on the
			// checks of its horizon's forecasts (some above their
			// minimum: the check below is of more than FloorMin), and
			// the refit phase the series' ref gives it.
			ref := refOf(e, ls)
			raised := 0
			for _, w := range e.p.workers {
				w.view(func(s *series) {
					if s.ref == ref {
						for i := range s.fc.horizons {
							if s.fc.pend[i].Floor > 0 {
								raised++
							}
						}
					}
				})
			}
			require.Positive(t, raised, "a band floor raised by the checks")

			dir := t.TempDir()
			in, out := filepath.Join(dir, "in.csv"), filepath.Join(dir, "out.csv")
			var b strings.Builder
			b.WriteString("timestamp,value\n")
			for i, v := range vs[:last+1] {
				fmt.Fprintf(&b, "%s,%s\n", csvio.FormatFloat(float64(t0.UnixMilli()+int64(i)*stepMs)/1000), csvio.FormatFloat(v))
			}
			require.NoError(t, os.WriteFile(in, []byte(b.String()), 0o644))
			got := cliForecast(t, in, out, forecastcli.Config{Horizons: tc.horizons, RefitPhase: refitPhase(ref), Detect: tc.det})
			if tc.det != (detect.Options{}) {
				def := cliForecast(t, in, filepath.Join(dir, "default.csv"), forecastcli.Config{Horizons: tc.horizons, RefitPhase: refitPhase(ref)})
				require.NotEqual(t, def, got, "the selection's detector changes the forecast of this series")
			}
			for i, h := range hs {
				pt, ok := got[made+tc.horizons[i].Milliseconds()]
				require.True(t, ok, "omen forecast has no row at %s", h)
				for j, fam := range fcFamilies {
					// Stored rounded to float32 where that is within a
					// thousandth of the band (storedPrecision).
					want := storedPrecision(pt[j], pt[2]-pt[1])
					require.InDelta(t, want, live[fam+"/"+h], 1e-9*max(1, math.Abs(want)), "%s{horizon=%s}", fam, h)
				}
			}
		})
	}
}

// cliForecast runs `omen forecast` on in with cfg and returns its rows by
// time (ms): yhat, yhat_lower, yhat_upper.
func cliForecast(t *testing.T, in, out string, cfg forecastcli.Config) map[int64][3]float64 {
	t.Helper()
	require.NoError(t, forecastcli.File(context.Background(), nil, in, out, cfg))
	f, err := csvio.ReadFile(out)
	require.NoError(t, err)
	rows := map[int64][3]float64{}
	for i, row := range f.Rows {
		var p [3]float64
		for j := range p {
			p[j], err = csvio.ParseValue(row[j+1])
			require.NoError(t, err)
		}
		rows[f.Times[i]] = p
	}
	return rows
}

// latestOutput returns the latest sample of family{for="temperature",
// horizon=h}: its time and value (0, 0 if none).
func latestOutput(t *testing.T, e *env, family, h string) (int64, float64) {
	t.Helper()
	qr, err := e.db.Querier(math.MinInt64, math.MaxInt64)
	require.NoError(t, err)
	defer qr.Close()
	var ts int64
	var v float64
	ss := qr.Select(context.Background(), false, nil, eq("__name__", family), eq("for", "temperature"), eq("horizon", h))
	for ss.Next() {
		it := ss.At().Iterator(nil)
		for it.Next() == chunkenc.ValFloat {
			ts, v = it.At()
		}
	}
	require.NoError(t, ss.Err())
	return ts, v
}
