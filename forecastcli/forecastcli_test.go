package forecastcli

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/omen-sidecar/omen/csvio"
	"github.com/omen-sidecar/omen/forecast"
)

// writeSeries writes n hourly samples of a daily sine to path, with unix
// second timestamps or, if rfc, "YYYY-MM-DD HH:MM:SS" ones.
func writeSeries(t *testing.T, path string, n int, rfc bool) {
	t.Helper()
	require.NoError(t, os.MkdirAll(filepath.Dir(path), 0o755))
	var b strings.Builder
	b.WriteString("timestamp,value\n")
	for i := range n {
		ts := int64(1_600_000_000 + 3600*i)
		v := 100 + 30*math.Sin(2*math.Pi*float64(i)/24)
		if rfc {
			fmt.Fprintf(&b, "%s,%g\n", time.Unix(ts, 0).UTC().Format(time.DateTime), v)
		} else {
			fmt.Fprintf(&b, "%d,%g\n", ts, v)
		}
	}
	require.NoError(t, os.WriteFile(path, []byte(b.String()), 0o644))
}

func TestFile(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "in.csv")
	writeSeries(t, in, 400, false)
	out := filepath.Join(dir, "out", "in.csv")
	require.NoError(t, File(context.Background(), nil, in, out, Config{Horizons: hours(1, 2, 3, 4, 5, 6)}))
	s, err := csvio.ReadFile(out)
	require.NoError(t, err)
	require.Equal(t, []string{"timestamp", "yhat", "yhat_lower", "yhat_upper"}, s.Header)
	require.Len(t, s.Rows, 6)
	for i, row := range s.Rows {
		require.Equal(t, fmt.Sprint(1_600_000_000+3600*(400+i)), row[0], "unix seconds in, unix seconds out, a horizon after the last row")
		want := 100 + 30*math.Sin(2*math.Pi*float64(400+i)/24)
		require.InDelta(t, want, s.Values[i], 0.5)
	}
}

// TestFileEpochMillis: Grafana's CSV export without "Formatted data"
// dates its rows in epoch milliseconds, Telegraf's and VictoriaMetrics's
// can in micro- or nanoseconds: the file is forecast as the same series in
// seconds is, and its forecasts are dated in the input's unit too. Micro-
// and nanoseconds were refused ("this looks like microseconds: divide by
// 1e6").
func TestFileEpochMillis(t *testing.T) {
	dir := t.TempDir()
	sec := filepath.Join(dir, "sec.csv")
	writeSeries(t, sec, 400, false)
	cfg := Config{Horizons: hours(1, 2)}
	secOut := filepath.Join(dir, "out", "sec.csv")
	require.NoError(t, File(context.Background(), nil, sec, secOut, cfg))
	want, err := csvio.ReadFile(secOut)
	require.NoError(t, err)
	b, err := os.ReadFile(sec)
	require.NoError(t, err)
	for _, tc := range []struct{ unit, zeros string }{{"ms", "000"}, {"us", "000000"}, {"ns", "000000000"}} {
		t.Run(tc.unit, func(t *testing.T) {
			lines := strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
			for i := 1; i < len(lines); i++ {
				ts, v, _ := strings.Cut(lines[i], ",")
				lines[i] = ts + tc.zeros + "," + v
			}
			in, out := filepath.Join(dir, tc.unit+".csv"), filepath.Join(dir, "out", tc.unit+".csv")
			require.NoError(t, os.WriteFile(in, []byte(strings.Join(lines, "\n")+"\n"), 0o644))
			require.NoError(t, File(context.Background(), nil, in, out, cfg))
			got, err := csvio.ReadFile(out)
			require.NoError(t, err)
			require.Len(t, got.Rows, 2)
			for i, row := range got.Rows {
				require.Equal(t, want.Rows[i][0]+tc.zeros, row[0], "epoch %s in, epoch %s out", tc.unit, tc.unit)
				require.Equal(t, want.Rows[i][1:], row[1:])
			}
		})
	}
}

func TestFileDateTimestamps(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "in.csv")
	writeSeries(t, in, 300, true)
	out := filepath.Join(dir, "out.csv")
	require.NoError(t, File(context.Background(), nil, in, out, Config{Horizons: hours(1, 2)}))
	s, err := csvio.ReadFile(out)
	require.NoError(t, err)
	require.Equal(t, time.Unix(1_600_000_000+3600*300, 0).UTC().Format(time.RFC3339), s.Rows[0][0])
}

// TestFileCompactDates: a daily series dated YYYYMMDD is read as dates
// (one day apart, not 1970's seconds) and forecast in RFC 3339.
func TestFileCompactDates(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "in.csv")
	var b strings.Builder
	b.WriteString("date,value\n")
	day0 := time.Date(2023, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := range 300 {
		fmt.Fprintf(&b, "%s,%g\n", day0.AddDate(0, 0, i).Format("20060102"), 100+30*math.Sin(2*math.Pi*float64(i)/7))
	}
	require.NoError(t, os.WriteFile(in, []byte(b.String()), 0o644))
	out := filepath.Join(dir, "out.csv")
	require.NoError(t, File(context.Background(), nil, in, out, Config{Horizons: hours(24, 48)}))
	s, err := csvio.ReadFile(out)
	require.NoError(t, err)
	require.Equal(t, day0.AddDate(0, 0, 300).Format(time.RFC3339), s.Rows[0][0])
	require.Equal(t, day0.AddDate(0, 0, 301).Format(time.RFC3339), s.Rows[1][0])
}

func TestFileErrors(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.csv")
	require.NoError(t, os.WriteFile(bad, []byte("timestamp,value\n1600000000,1\n1600003600,abc\n"), 0o644))
	err := File(context.Background(), nil, bad, filepath.Join(dir, "o.csv"), Config{Horizons: hours(3)})
	require.ErrorContains(t, err, "bad.csv:3")
	require.ErrorContains(t, err, `"abc"`)

	short := filepath.Join(dir, "short.csv")
	writeSeries(t, short, 20, false)
	err = File(context.Background(), nil, short, filepath.Join(dir, "o.csv"), Config{Horizons: hours(3)})
	require.ErrorContains(t, err, "20 usable steps")

	// A table exported newest first reached the model as one sample (the
	// rest went back in time) and failed with "1 usable samples".
	var b strings.Builder
	b.WriteString("timestamp,value\n")
	for i := range 300 {
		fmt.Fprintf(&b, "%d,%d\n", 1_600_000_000+3600*(299-i), i%24)
	}
	rev := filepath.Join(dir, "rev.csv")
	require.NoError(t, os.WriteFile(rev, []byte(b.String()), 0o644))
	err = File(context.Background(), nil, rev, filepath.Join(dir, "o.csv"), Config{Horizons: hours(3)})
	require.ErrorContains(t, err, "299 of 300 rows")
	require.ErrorContains(t, err, "oldest first")
}

// TestConfigValidate: the horizons are refused as a selection's
// forecast_horizons are: none, not positive, given twice, more than
// config.MaxForecastHorizons.
func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name     string
		horizons []time.Duration
		err      string
	}{
		{"the default horizons", []time.Duration{5 * time.Minute, 15 * time.Minute, 30 * time.Minute}, ""},
		{"eight", hours(1, 2, 3, 4, 5, 6, 7, 8), ""},
		{"none", nil, "no horizon: want at least one"},
		{"zero", []time.Duration{0}, "horizon 0s: want a positive duration"},
		{"negative", []time.Duration{-time.Minute}, "horizon -1m0s: want a positive duration"},
		{"twice", hours(1, 2, 1), "horizon 1h0m0s given twice"},
		{"nine", hours(1, 2, 3, 4, 5, 6, 7, 8, 9), "9 horizons: at most 8"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := Config{Horizons: tc.horizons}.Validate()
			if tc.err == "" {
				require.NoError(t, err)
				return
			}
			require.EqualError(t, err, tc.err)
		})
	}
}

// TestConfigValidateSteps: a curve too long for the history is refused
// in terms of the two flags a user set, not of the model's MinSamples and
// MaxHorizon, which they never did. The bounds come from forecast.Options:
// a model fits on at least 2·steps+32 samples of its history, and serves
// horizons up to 65536.
func TestConfigValidateSteps(t *testing.T) {
	for _, tc := range []struct {
		name           string
		steps, history int
		err            string
	}{
		{"longest for the default history", 496, 0, ""},
		{"one step more", 497, 0, "steps 497: at most 496 with history 1024"},
		{"a longer history allows it", 497, 1026, ""},
		{"beyond any history", 70000, 1 << 20, "steps 70000: at most 65536"},
		{"negative", -1, 0, "steps -1: want at least 1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := Config{Steps: tc.steps, Curve: forecast.Options{History: tc.history}}.Validate()
			if tc.err == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorContains(t, err, tc.err)
			require.NotContains(t, err.Error(), "min samples")
		})
	}
}

// TestFileCurve: Config.Steps forecasts the model's curve of that many
// steps of the series' own interval (hourly here) after its last row.
func TestFileCurve(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "in.csv")
	writeSeries(t, in, 400, false)
	out := filepath.Join(dir, "out.csv")
	require.NoError(t, File(context.Background(), nil, in, out, Config{Steps: 30}))
	s, err := csvio.ReadFile(out)
	require.NoError(t, err)
	require.Len(t, s.Rows, 30)
	for i, row := range s.Rows {
		require.Equal(t, fmt.Sprint(1_600_000_000+3600*(400+i)), row[0], "one step apart")
		require.InDelta(t, 100+30*math.Sin(2*math.Pi*float64(400+i)/24), s.Values[i], 0.5)
	}

	short := filepath.Join(dir, "short.csv")
	writeSeries(t, short, 20, false)
	err = File(context.Background(), nil, short, out, Config{Steps: 3})
	require.ErrorContains(t, err, "short.csv: 20 usable samples, need at least 64")
}

// hours returns the horizons of hs hours.
func hours(hs ...int) []time.Duration {
	out := make([]time.Duration, len(hs))
	for i, h := range hs {
		out[i] = time.Duration(h) * time.Hour
	}
	return out
}

func TestRunMirrorsTree(t *testing.T) {
	dir := t.TempDir()
	writeSeries(t, filepath.Join(dir, "in", "a.csv"), 300, false)
	writeSeries(t, filepath.Join(dir, "in", "sub", "b.csv"), 300, false)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "in", "sub", "broken.csv"), []byte("timestamp,value\nx,1\n"), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "in", "notes.txt"), []byte("ignored"), 0o644))
	sum, err := Run(context.Background(), nil, filepath.Join(dir, "in"), filepath.Join(dir, "out"), 2, nil, Config{Horizons: hours(4)})
	require.NoError(t, err)
	require.Equal(t, Summary{Files: 3, Failed: 1}, sum)
	require.FileExists(t, filepath.Join(dir, "out", "a.csv"))
	require.FileExists(t, filepath.Join(dir, "out", "sub", "b.csv"))
	require.NoFileExists(t, filepath.Join(dir, "out", "sub", "broken.csv"))

	_, err = Run(context.Background(), nil, filepath.Join(dir, "nope"), filepath.Join(dir, "out"), 1, nil, Config{Horizons: hours(4)})
	require.ErrorContains(t, err, "input:")
}

// TestRunRefusesOutput: an output batch refuses (the inputs' own folder, or
// inside the input folder) makes Run fail, so that `omen forecast` exits
// non-zero rather than reporting "0 files, 0 failed" as a success.
func TestRunRefusesOutput(t *testing.T) {
	in := t.TempDir()
	writeSeries(t, filepath.Join(in, "a.csv"), 300, false)
	for _, tc := range []struct {
		name, input, output, err string
	}{
		{"folder onto itself", in, in, "would overwrite"},
		{"file into its folder", filepath.Join(in, "a.csv"), in, "would overwrite"},
		{"inside the input folder", in, filepath.Join(in, "out"), "inside the input folder"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Run(context.Background(), nil, tc.input, tc.output, 1, nil, Config{Horizons: hours(2)})
			require.ErrorContains(t, err, tc.err)
		})
	}
}

// TestFileSkipsRowsTheLivePathRefuses: a row at or before the time of an
// earlier row is not learnt, as `omen backtest` skips it and the TSDB
// refuses it live, also when the earlier row's value is missing (an empty
// cell is stored live as a NaN sample, so a later row at its time is a
// duplicate): the forecast is that of the file without it.
func TestFileSkipsRowsTheLivePathRefuses(t *testing.T) {
	for _, tc := range []struct {
		name  string
		extra func(i int) string // rows after row i of the series; "" for none
	}{
		{"after an empty cell, the same time", func(i int) string {
			if i%50 == 49 {
				return fmt.Sprintf("%d,\n%d,%g\n", 1_600_000_000+3600*i+1800, 1_600_000_000+3600*i+1800, 500.0)
			}
			return ""
		}},
		{"after an empty cell, earlier", func(i int) string {
			if i%50 == 49 {
				return fmt.Sprintf("%d,\n%d,%g\n", 1_600_000_000+3600*i+1800, 1_600_000_000+3600*i+900, 500.0)
			}
			return ""
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			var with, without strings.Builder
			with.WriteString("timestamp,value\n")
			without.WriteString("timestamp,value\n")
			for i := range 400 {
				line := fmt.Sprintf("%d,%g\n", 1_600_000_000+3600*i, 100+30*math.Sin(2*math.Pi*float64(i)/24))
				with.WriteString(line)
				without.WriteString(line)
				if e := tc.extra(i); e != "" {
					with.WriteString(e)
					without.WriteString(e[:strings.IndexByte(e, '\n')+1]) // the empty cell alone
				}
			}
			got := forecastOf(t, dir, "with", with.String())
			want := forecastOf(t, dir, "without", without.String())
			require.Equal(t, want, got)
		})
	}
}

// forecastOf writes body to dir/name.csv, forecasts it 24 hours ahead into
// dir/out and returns the output.
func forecastOf(t *testing.T, dir, name, body string) string {
	t.Helper()
	in, out := filepath.Join(dir, name+".csv"), filepath.Join(dir, "out", name+".csv")
	require.NoError(t, os.WriteFile(in, []byte(body), 0o644))
	require.NoError(t, File(context.Background(), nil, in, out, Config{Horizons: hours(24)}))
	b, err := os.ReadFile(out)
	require.NoError(t, err)
	return string(b)
}

// TestFileWarnsOfMoreSeries: of a file with a column per series
// (Grafana's "Series joined by time"), only the second column is
// forecast; the others are warned of by name, a label column is not.
func TestFileWarnsOfMoreSeries(t *testing.T) {
	for _, tc := range []struct {
		name, header, extra, warn string
	}{
		{"joined by time", "Time,a,b", ",3", `\"b\"`},
		{"a label", "timestamp,value,host", ",web-1", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			in, out := filepath.Join(dir, "in.csv"), filepath.Join(dir, "out.csv")
			var b strings.Builder
			b.WriteString(tc.header + "\n")
			for i := range 200 {
				fmt.Fprintf(&b, "%d,%g%s\n", 1_700_000_000+60*i, 10+math.Sin(float64(i)), tc.extra)
			}
			require.NoError(t, os.WriteFile(in, []byte(b.String()), 0o644))
			var logs bytes.Buffer
			require.NoError(t, File(context.Background(), slog.New(slog.NewTextHandler(&logs, nil)), in, out, Config{Horizons: []time.Duration{6 * time.Minute}}))
			if tc.warn == "" {
				require.Empty(t, logs.String())
				return
			}
			require.Contains(t, logs.String(), "level=WARN")
			require.Contains(t, logs.String(), tc.warn)
		})
	}
}
