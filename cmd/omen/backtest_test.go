package main

import (
	"context"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/omen-sidecar/omen/backtest"
	"github.com/omen-sidecar/omen/detect"
	"github.com/omen-sidecar/omen/forecastcli"
)

// TestBacktestFlagsScoreAsServe: `omen backtest` takes every option that a
// selection of omen serve's configuration sets on its detector (direction,
// false_alarm_rate, min_deviation_abs and _rel, flatline), and scores a
// file as a detector with those options does. flatline had no flag: a
// config with it could not be backtested.
func TestBacktestFlagsScoreAsServe(t *testing.T) {
	dir := t.TempDir()
	in := writeSeriesCSV(t, dir, 1500, 300, func(i int) float64 {
		if i >= 1200 && i < 1300 {
			return 42 // stuck
		}
		return 50 + 10*math.Sin(2*math.Pi*float64(i)/288) + float64((i*7919)%13)/4
	})

	requireDetectorFlags(t, "backtest", in, []detectorCase{
		{"defaults", nil, detect.DefaultOptions()},
		{"flatline", []string{"--detect.flatline"}, withOptions(func(o *detect.Options) { o.Members |= detect.MemberFlat })},
		{"all of a selection's", []string{"--detect.flatline", "--detect.direction=up", "--detect.false-alarm-rate=0.01", "--detect.min-deviation-abs=0.5", "--detect.min-deviation-rel=0.05"},
			withOptions(func(o *detect.Options) {
				o.Members |= detect.MemberFlat
				o.Direction, o.FalseAlarmRate, o.MinDeviationAbs, o.MinDeviationRel = detect.Up, 0.01, 0.5, 0.05
			})},
	}, func(out string, o detect.Options) error {
		return backtest.File(context.Background(), nil, in, out, o, nil)
	})
}

// detectorCase is a command's detector flags and the options they set.
type detectorCase struct {
	name string
	args []string
	want detect.Options
}

// withOptions returns the default detector options as f changes them.
func withOptions(f func(o *detect.Options)) detect.Options {
	o := detect.DefaultOptions()
	f(&o)
	return o
}

// requireDetectorFlags runs `omen cmd` over the file in with each case's
// flags, and checks that it writes what file writes with the case's
// options and, for a case with flags, not what it writes with the default
// detector's.
func requireDetectorFlags(t *testing.T, cmd, in string, cases []detectorCase, file func(out string, o detect.Options) error) {
	t.Helper()
	dir := t.TempDir()
	def := filepath.Join(dir, "default.csv")
	require.NoError(t, file(def, detect.DefaultOptions()))
	defOut, err := os.ReadFile(def)
	require.NoError(t, err)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, want := filepath.Join(dir, tc.name, "got.csv"), filepath.Join(dir, tc.name, "want.csv")
			require.Equal(t, 0, runMain(append([]string{cmd, "--input", in, "--output", got}, tc.args...)))
			require.NoError(t, file(want, tc.want))
			g, err := os.ReadFile(got)
			require.NoError(t, err)
			w, err := os.ReadFile(want)
			require.NoError(t, err)
			require.Equal(t, string(w), string(g))
			if tc.args != nil {
				require.NotEqual(t, string(defOut), string(g), "the flags change the output for this file")
			}
		})
	}
}

// TestStdio: --input - reads standard input and --output - writes
// standard output, for a pipe (curl ... | jq ... | omen backtest --input -
// --output -). kingpin reads a lone "-" after a flag as an empty value:
// the commands said "input: stat : no such file or directory".
func TestStdio(t *testing.T) {
	dir := t.TempDir()
	in := writeSeriesCSV(t, dir, 300, 60, func(i int) float64 { return 10 + math.Sin(float64(i)/9) })
	for _, cmd := range []string{"backtest", "forecast"} {
		want := filepath.Join(dir, cmd+"-want.csv")
		require.Equal(t, 0, runMain([]string{cmd, "--input", in, "--output", want}))
		for _, tc := range []struct {
			name          string
			input, output string // "-" for standard input, output
		}{
			{"pipe", "-", "-"},
			{"pipe, with =", "=-", "=-"},
			{"from standard input", "-", filepath.Join(dir, cmd+"-out.csv")},
			{"to standard output", in, "-"},
		} {
			t.Run(cmd+"/"+tc.name, func(t *testing.T) {
				stdout := filepath.Join(t.TempDir(), "stdout")
				args := []string{cmd}
				for _, f := range []struct{ flag, v string }{{"--input", tc.input}, {"--output", tc.output}} {
					if strings.HasPrefix(f.v, "=") {
						args = append(args, f.flag+f.v)
					} else {
						args = append(args, f.flag, f.v)
					}
				}
				require.Equal(t, 0, withStdio(t, in, stdout, func() int { return runMain(args) }))
				got := tc.output
				if strings.HasSuffix(got, "-") {
					got = stdout
				}
				g, err := os.ReadFile(got)
				require.NoError(t, err)
				w, err := os.ReadFile(want)
				require.NoError(t, err)
				require.Equal(t, string(w), string(g))
			})
		}
		t.Run(cmd+"/a folder to standard output", func(t *testing.T) {
			require.Equal(t, 1, withStdio(t, in, filepath.Join(t.TempDir(), "stdout"), func() int {
				return runMain([]string{cmd, "--input", dir, "--output", "-"})
			}))
		})
	}
}

// withStdio runs f with standard input read from the file in and
// standard output written to the file out.
func withStdio(t *testing.T, in, out string, f func() int) int {
	t.Helper()
	i, err := os.Open(in)
	require.NoError(t, err)
	defer i.Close()
	o, err := os.Create(out)
	require.NoError(t, err)
	defer o.Close()
	stdin, stdout := os.Stdin, os.Stdout
	os.Stdin, os.Stdout = i, o
	defer func() { os.Stdin, os.Stdout = stdin, stdout }()
	return f()
}

// writeSeriesCSV writes dir/in.csv, n rows of value(i) step seconds
// apart, and returns its path.
func writeSeriesCSV(t *testing.T, dir string, n, step int, value func(i int) float64) string {
	t.Helper()
	var b strings.Builder
	b.WriteString("timestamp,value\n")
	for i := range n {
		fmt.Fprintf(&b, "%d,%g\n", 1_700_000_000+step*i, value(i))
	}
	in := filepath.Join(dir, "in.csv")
	require.NoError(t, os.WriteFile(in, []byte(b.String()), 0o644))
	return in
}

// TestForecastRemovedFlags: the flags of omen forecast's model curve before
// it forecast as live fail with what became of them, and write nothing.
func TestForecastRemovedFlags(t *testing.T) {
	dir := t.TempDir()
	in := writeSeriesCSV(t, dir, 300, 60, func(i int) float64 { return 10 + math.Sin(float64(i)/9) })
	for _, flag := range []string{"--horizon=48", "--coverage=0.9"} {
		t.Run(flag, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "out.csv")
			require.Equal(t, 1, runMain([]string{"forecast", "--input", in, "--output", out, flag}))
			require.NoFileExists(t, out)
		})
	}
}

// TestForecastDetectorFlags: `omen forecast` takes omen backtest's
// detector flags. Its rows are scored by a detector whose scores clip
// what the forecaster learns (livefc.Learnable), as omen serve's
// selection options set it live: with the default detector alone, a
// series whose configuration scores only drops (direction: down) could
// not be forecast as serve forecasts it, its rises clipped.
func TestForecastDetectorFlags(t *testing.T) {
	dir := t.TempDir()
	in := writeSeriesCSV(t, dir, 1500, 60, func(i int) float64 {
		v := 50 + 10*math.Sin(2*math.Pi*float64(i)/288) + float64((i*7919)%13)/4
		if i%97 == 0 && i > 600 {
			v += 60 // a rise the default detector scores above 1
		}
		return v
	})
	hs, err := parseHorizons(defaultHorizons())
	require.NoError(t, err)
	requireDetectorFlags(t, "forecast", in, []detectorCase{
		{"direction", []string{"--detect.direction=down"}, withOptions(func(o *detect.Options) { o.Direction = detect.Down })},
		{"minimum deviation", []string{"--detect.min-deviation-abs=100"}, withOptions(func(o *detect.Options) { o.MinDeviationAbs = 100 })},
	}, func(out string, o detect.Options) error {
		return forecastcli.File(context.Background(), nil, in, out, forecastcli.Config{Horizons: hs, Detect: o})
	})
}
