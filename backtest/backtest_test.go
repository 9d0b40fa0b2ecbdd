package backtest

import (
	"bytes"
	"context"
	"encoding/csv"
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/omen-sidecar/omen/detect"
)

func writeFile(t *testing.T, path, body string) {
	t.Helper()
	require.NoError(t, os.MkdirAll(filepath.Dir(path), 0o755))
	require.NoError(t, os.WriteFile(path, []byte(body), 0o644))
}

func csvBody(n int, extra bool) string {
	var b strings.Builder
	if extra {
		b.WriteString("timestamp,value,host\n")
	} else {
		b.WriteString("timestamp,value\n")
	}
	for i := range n {
		v := 10 + math.Sin(float64(i)/7)
		if i == n-10 {
			v = 100
		}
		fmt.Fprintf(&b, "%d,%g", 1_700_000_000+i*60, v)
		if extra {
			b.WriteString(",a")
		}
		b.WriteString("\n")
	}
	return b.String()
}

func TestRunMirrorsTree(t *testing.T) {
	in, out := t.TempDir(), t.TempDir()
	writeFile(t, filepath.Join(in, "a.csv"), csvBody(600, false))
	writeFile(t, filepath.Join(in, "sub", "deeper", "b.csv"), csvBody(600, true))
	writeFile(t, filepath.Join(in, "notes.txt"), "not a series")
	var calls int
	sum, err := Run(context.Background(), Config{Input: in, Output: out, Workers: 2, Detect: detect.DefaultOptions(),
		Progress: func(done, total int) { calls++; require.Equal(t, 2, total) }})
	require.NoError(t, err)
	require.Equal(t, Summary{Files: 2}, sum)
	require.Equal(t, 2, calls)

	f, err := os.Open(filepath.Join(out, "sub", "deeper", "b.csv"))
	require.NoError(t, err)
	defer f.Close()
	recs, err := csv.NewReader(f).ReadAll()
	require.NoError(t, err)
	require.Equal(t, []string{"timestamp", "value", "host", "anomaly_score", "yhat", "yhat_lower", "yhat_upper"}, recs[0])
	require.Len(t, recs, 601)
	require.Equal(t, "a", recs[1][2])
	_, err = os.Stat(filepath.Join(out, "notes.txt"))
	require.True(t, os.IsNotExist(err))
}

func TestRunSingleFile(t *testing.T) {
	dir, out := t.TempDir(), t.TempDir()
	in := filepath.Join(dir, "one.csv")
	writeFile(t, in, csvBody(300, false))
	sum, err := Run(context.Background(), Config{Input: in, Output: out, Detect: detect.DefaultOptions()})
	require.NoError(t, err)
	require.Equal(t, 1, sum.Files)
	_, err = os.Stat(filepath.Join(out, "one.csv"))
	require.NoError(t, err)
}

func TestRunBadRows(t *testing.T) {
	tests := []struct {
		name string
		body string
		want string // substring of the error: file and line
	}{
		{name: "bad value", body: "timestamp,value\n1700000000,1\n1700000060,abc\n", want: "bad.csv:3"},
		{name: "bad timestamp", body: "timestamp,value\n1700000000,1\nyesterday,2\n", want: "bad.csv:3"},
		{name: "short row", body: "timestamp,value\n1700000000\n", want: "bad.csv:2"},
		{name: "empty", body: "", want: "bad.csv"},
		// Rows are streamed: those before the bad one have been scored and
		// written when it is read, and must not be left as a result.
		{name: "bad value far in", body: csvBody(20000, false) + "1800000000,abc\n", want: "bad.csv:20002"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in, out := t.TempDir(), t.TempDir()
			writeFile(t, filepath.Join(in, "bad.csv"), tt.body)
			writeFile(t, filepath.Join(in, "good.csv"), csvBody(100, false))
			sum, err := Run(context.Background(), Config{Input: in, Output: out, Detect: detect.DefaultOptions()})
			require.Error(t, err)
			require.Contains(t, err.Error(), tt.want)
			// The good file is still scored.
			require.Equal(t, Summary{Files: 2, Failed: 1}, sum)
			require.NoFileExists(t, filepath.Join(out, "bad.csv"))
			_, err = os.Stat(filepath.Join(out, "good.csv"))
			require.NoError(t, err)
		})
	}
}

func TestRunErrors(t *testing.T) {
	_, err := Run(context.Background(), Config{Input: filepath.Join(t.TempDir(), "missing"), Output: t.TempDir(), Detect: detect.DefaultOptions()})
	require.Error(t, err)
	_, err = Run(context.Background(), Config{Input: t.TempDir(), Output: t.TempDir(), Detect: detect.DefaultOptions()})
	require.ErrorContains(t, err, "no .csv files")
	bad := detect.DefaultOptions()
	bad.FalseAlarmRate = 2
	_, err = Run(context.Background(), Config{Input: t.TempDir(), Output: t.TempDir(), Detect: bad})
	require.ErrorContains(t, err, "false-alarm rate")
}

func TestFileFlagsSpike(t *testing.T) {
	recs := scoreFile(t, t.TempDir(), "in", csvBody(800, false))
	spike := recs[800-10+1] // header, then rows
	require.Equal(t, "100", spike[1])
	var s float64
	_, err := fmt.Sscan(spike[2], &s)
	require.NoError(t, err)
	require.Greater(t, s, 1.0)
}

// TestFileSkipsTimeGoingBack: a row at or before the latest scored time is
// kept in the output, scored 0 without a band, and not shown to the
// detector, as the live path never shows it one (the TSDB refuses it as
// out of order): the scores after it equal those of the file without it.
func TestFileSkipsTimeGoingBack(t *testing.T) {
	dir := t.TempDir()
	var with, without strings.Builder
	with.WriteString("timestamp,value\n")
	without.WriteString("timestamp,value\n")
	for i := range 400 {
		line := fmt.Sprintf("%d,%g\n", 1_700_000_000+i*60, 10+math.Sin(float64(i)/7))
		with.WriteString(line)
		without.WriteString(line)
		if i == 200 || i == 300 {
			fmt.Fprintf(&with, "%d,%g\n", 1_700_000_000+(i-5)*60, 99.0) // back in time
			fmt.Fprintf(&with, "%d,%g\n", 1_700_000_000+i*60, 98.0)     // a duplicate
		}
	}
	got, want := scoreFile(t, dir, "with", with.String()), scoreFile(t, dir, "without", without.String())
	require.Len(t, got, len(want)+4)
	var kept [][]string
	for _, r := range got[1:] {
		if r[1] == "99" || r[1] == "98" {
			require.Equal(t, []string{"0", "", "", ""}, r[2:], "skipped row %v", r)
			continue
		}
		kept = append(kept, r)
	}
	require.Equal(t, want[1:], kept, "the other rows score as if the skipped ones were not there")
}

// scoreFile writes body to dir/name.csv, backtests it with the default
// options into dir/out, and returns the output's records.
func scoreFile(t *testing.T, dir, name, body string) [][]string {
	t.Helper()
	in, out := filepath.Join(dir, name+".csv"), filepath.Join(dir, "out", name+".csv")
	writeFile(t, in, body)
	require.NoError(t, File(context.Background(), nil, in, out, detect.DefaultOptions(), nil))
	f, err := os.Open(out)
	require.NoError(t, err)
	defer f.Close()
	recs, err := csv.NewReader(f).ReadAll()
	require.NoError(t, err)
	return recs
}

// TestFileWritesWholeOrNothing: a run stopped part way (Ctrl-C cancels the
// context) leaves no output file, not a truncated one that reads as a
// shorter backtest, and a rerun that fails keeps the complete output of
// the run before it.
func TestFileWritesWholeOrNothing(t *testing.T) {
	dir := t.TempDir()
	in, out := filepath.Join(dir, "in.csv"), filepath.Join(dir, "out", "in.csv")
	writeFile(t, in, csvBody(10000, false))
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	require.ErrorIs(t, File(cancelled, nil, in, out, detect.DefaultOptions(), nil), context.Canceled)
	require.NoFileExists(t, out)
	entries, err := os.ReadDir(filepath.Dir(out))
	if err == nil {
		require.Empty(t, entries, "no temporary file left behind")
	}

	require.NoError(t, File(context.Background(), nil, in, out, detect.DefaultOptions(), nil))
	before, err := os.ReadFile(out)
	require.NoError(t, err)
	require.Error(t, File(cancelled, nil, in, out, detect.DefaultOptions(), nil))
	after, err := os.ReadFile(out)
	require.NoError(t, err)
	require.Equal(t, before, after)
	entries, err = os.ReadDir(filepath.Dir(out))
	require.NoError(t, err)
	require.Len(t, entries, 1, "only the output, no temporary file")
}

// TestFileRefusesDisorder: a file in which most rows go back in time or
// repeat one is not a series in time order: a table exported newest first,
// or several series interleaved (long format). Scored as it is, every row
// after the first was skipped with score 0 and the run succeeded. It fails
// with what to do instead, and leaves no output. A few rows going back, as
// real exports have, are still skipped (TestFileSkipsTimeGoingBack).
func TestFileRefusesDisorder(t *testing.T) {
	var newestFirst, two, three strings.Builder
	newestFirst.WriteString("timestamp,value\n")
	two.WriteString("timestamp,value,host\n")
	three.WriteString("timestamp,value,host\n")
	for i := range 300 {
		fmt.Fprintf(&newestFirst, "%d,%g\n", 1_700_000_000+(299-i)*60, 10+math.Sin(float64(i)/7))
		for j, h := range []string{"a", "b", "c"} {
			line := fmt.Sprintf("%d,%g,%s\n", 1_700_000_000+i*60, 10+math.Sin(float64(i)/7), h)
			three.WriteString(line)
			if j < 2 {
				two.WriteString(line)
			}
		}
	}
	for _, tc := range []struct{ name, body string }{
		{"newest first", newestFirst.String()},
		{"two series interleaved", two.String()},
		{"three series interleaved", three.String()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			in, out := filepath.Join(dir, "in.csv"), filepath.Join(dir, "out", "in.csv")
			writeFile(t, in, tc.body)
			err := File(context.Background(), nil, in, out, detect.DefaultOptions(), nil)
			require.ErrorContains(t, err, "in.csv")
			require.ErrorContains(t, err, "oldest first")
			require.NoFileExists(t, out)
		})
	}
}

// TestFileNoLookahead: the score and band at row t depend on rows up to t
// only, as live, where the rows after t have not arrived: whatever follows
// (other values, a spike, a gap, rows going back, nothing), rows up to t
// are written the same.
func TestFileNoLookahead(t *testing.T) {
	const n, at = 800, 500
	row := func(i int, v float64) string { return fmt.Sprintf("%d,%g\n", 1_700_000_000+i*60, v) }
	base := func(i int) float64 { return 10 + 3*math.Sin(2*math.Pi*float64(i)/144) + float64((i*7919)%17)/8 }
	body := func(after func(b *strings.Builder)) string {
		var b strings.Builder
		b.WriteString("timestamp,value\n")
		for i := 0; i <= at; i++ {
			b.WriteString(row(i, base(i)))
		}
		after(&b)
		return b.String()
	}
	dir := t.TempDir()
	want := scoreFile(t, dir, "original", body(func(b *strings.Builder) {
		for i := at + 1; i < n; i++ {
			b.WriteString(row(i, base(i)))
		}
	}))
	for _, tc := range []struct {
		name  string
		after func(b *strings.Builder)
	}{
		{"nothing", func(*strings.Builder) {}},
		{"other values", func(b *strings.Builder) {
			for i := at + 1; i < n; i++ {
				b.WriteString(row(i, 2*base(i)-7))
			}
		}},
		{"a spike", func(b *strings.Builder) {
			for i := at + 1; i < n; i++ {
				b.WriteString(row(i, base(i)+float64(i%50)*100))
			}
		}},
		{"a gap, then missing values", func(b *strings.Builder) {
			for i := at + 100; i < n; i++ {
				b.WriteString(fmt.Sprintf("%d,\n", 1_700_000_000+i*60))
			}
		}},
		{"rows going back", func(b *strings.Builder) {
			for i := at; i > at-20; i-- {
				b.WriteString(row(i, 99))
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := scoreFile(t, dir, strings.ReplaceAll(tc.name, " ", "_"), body(tc.after))
			require.GreaterOrEqual(t, len(got), at+2)
			require.Equal(t, want[:at+2], got[:at+2], "header and rows 0..%d", at)
		})
	}
}

// TestFileWarnsOfMoreSeries: Grafana's CSV of a panel with several series
// ("Series joined by time") has one column per series; only the second
// column is scored, and the others, passed through, looked scored. A
// number in a later column of the first row is warned of by name; a
// label column is not.
func TestFileWarnsOfMoreSeries(t *testing.T) {
	for _, tc := range []struct {
		name, header, extra string
		warn                []string // columns named in the warning; none: no warning
	}{
		{"joined by time", `"Time","cpu A","cpu B","cpu C"`, ",1.5,2", []string{`"cpu B"`, `"cpu C"`}},
		{"a gap in one", "Time,a,b,c", ",,7", []string{`"c"`}},
		{"a label", "timestamp,value,host", ",web-1", nil},
		{"one series", "timestamp,value", "", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			in, out := filepath.Join(dir, "in.csv"), filepath.Join(dir, "out.csv")
			var b strings.Builder
			b.WriteString(tc.header + "\n")
			for i := range 100 {
				fmt.Fprintf(&b, "%d,%g%s\n", 1_700_000_000+60*i, 10+math.Sin(float64(i)), tc.extra)
			}
			writeFile(t, in, b.String())
			var logs bytes.Buffer
			logger := slog.New(slog.NewTextHandler(&logs, nil))
			require.NoError(t, File(context.Background(), logger, in, out, detect.DefaultOptions(), nil))
			if tc.warn == nil {
				require.Empty(t, logs.String())
				return
			}
			require.Contains(t, logs.String(), "level=WARN")
			require.Contains(t, logs.String(), in)
			for _, c := range tc.warn {
				require.Contains(t, logs.String(), strings.ReplaceAll(c, `"`, `\"`))
			}
		})
	}
}
