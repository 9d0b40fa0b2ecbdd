package csvio

import (
	"bytes"
	"encoding/csv"
	"math"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestRead(t *testing.T) {
	s, err := Read(strings.NewReader("timestamp,value,label\n1700000000,1.5,a\n2023-11-14 22:13:21,,b\n2023-11-14T22:13:22Z,NaN,c\n"), "x.csv")
	require.NoError(t, err)
	require.Equal(t, []string{"timestamp", "value", "label"}, s.Header)
	require.Equal(t, []int64{1700000000000, 1700000001000, 1700000002000}, s.Times)
	require.Equal(t, 1.5, s.Values[0])
	require.True(t, math.IsNaN(s.Values[1]))
	require.True(t, math.IsNaN(s.Values[2]))
	require.Equal(t, "c", s.Rows[2][2])
}

func TestReadKeepsFileOrder(t *testing.T) {
	s, err := Read(strings.NewReader("t,v\n5,2\n3,1\n"), "x.csv")
	require.NoError(t, err)
	require.Equal(t, []int64{5000, 3000}, s.Times)
}

func TestReadErrors(t *testing.T) {
	for _, tc := range []struct {
		name, in, want string
	}{
		{"empty", "", "x.csv: empty file"},
		{"one column header", "timestamp\n", "x.csv:1: header has 1 column"},
		{"bad time", "t,v\n1,2\nyesterday,3\n", `x.csv:3: timestamp "yesterday"`},
		{"bad value", "t,v\n1,2\n2,abc\n", `x.csv:3: value "abc" is not a number`},
		{"short row", "t,v\n1,2\n3\n", "x.csv:3: row has 1 column(s)"},
		{"long row", "t,v\n1,2\n3,4,extra\n", "x.csv:3: row has 3 columns, the header 2"},
		{"bad quote", "t,v\n1,\"2\n", "x.csv:"},
		// Excel's "Unicode Text" and PowerShell's Export-Csv (5.1) write
		// UTF-16: read as bytes, every cell had NULs between its letters.
		{"UTF-16LE", "\xff\xfet\x00,\x00v\x00\n\x001\x00,\x002\x00\n\x00", "x.csv: UTF-16"},
		{"UTF-16BE", "\xfe\xff\x00t\x00,\x00v\x00\n", "x.csv: UTF-16"},
		// jq -r '.data.result[0].values[] | @csv' over a query_range
		// answer writes no header: its first sample was taken for one.
		{"no header", "1733011200,\"1.5\"\n1733011215,\"1.6\"\n", "x.csv:1: no header row"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Read(strings.NewReader(tc.in), "x.csv")
			require.Error(t, err)
			require.Contains(t, err.Error(), tc.want)
		})
	}
}

func TestParseTime(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64 // unix ms
		err  string
	}{
		{"1700000000", 1700000000000, ""},
		{"1700000000.25", 1700000000250, ""},
		{"2023-11-14T22:13:20Z", 1700000000000, ""},
		{"2023-11-14 22:13:20", 1700000000000, ""},
		// pandas' to_csv of a time zone aware index (pd.to_datetime(...,
		// utc=True), the usual way from a query_range answer) writes RFC
		// 3339 with a space for the T, which RFC 3339 (section 5.6) allows.
		{"2023-11-14 22:13:20+00:00", 1700000000000, ""},
		{"2023-11-14 23:13:20.5+01:00", 1700000000500, ""},
		{"2023-11-14 22:13:20Z", 1700000000000, ""},
		{"2023-11-14T22:13", 1699999980000, ""}, // HTML's datetime-local, spreadsheets
		{"11/14/2023 22:13", 0, "YYYYMMDD"},     // month or day first: not guessed
		{"2023-11-14", 1699920000000, ""},
		{"20231114", 1699920000000, ""}, // a date, not 1970-08-23
		{"20231399", 20231399000, ""},   // no such date: unix seconds
		{"12345678", 12345678000, ""},   // year 1234: unix seconds
		{"2023111", 2023111000, ""},     // seven digits: unix seconds
		{"yesterday", 0, "YYYYMMDD"},    // names every form
		// Grafana's CSV without "Formatted data", and many exporters,
		// write epoch milliseconds: a number above 1e11, which as unix
		// seconds would be after the year 5000, is read as them (it was
		// refused with a hint to divide by 1000).
		{"1700000000000", 1700000000000, ""},
		{"1700000000123", 1700000000123, ""},
		{"1700000000123.4", 1700000000123, ""},
		{"99999999999", 99999999999000, ""},    // year 5138: seconds still
		{"100000000001", 100000000001, ""},     // 1973-03-03 in milliseconds
		{"-1700000000000", -1700000000000, ""}, // 1916
		// Finer units, as Telegraf's CSV (unix_us, unix_ns),
		// VictoriaMetrics's export (unix_ns) and pandas' int64 times write
		// them: from 1e14 microseconds, from 1e17 nanoseconds, each from
		// 1973 to the year 5138, rounded to the nearest millisecond (half
		// away from zero, exactly for integers). They were refused with a
		// hint to divide.
		{"1700000000000000", 1700000000000, ""},
		{"1700000000123456", 1700000000123, ""},
		{"1700000000123500", 1700000000124, ""},
		{"1.7e15", 1700000000000, ""},
		{"-1700000000000500", -1700000000001, ""}, // 1916
		{"99999999999999", 99999999999999, ""},    // year 5138: milliseconds still
		{"100000000000000", 100000000000, ""},     // 1973-03-03 in microseconds
		{"1700000000000000000", 1700000000000, ""},
		{"1700000000123456789", 1700000000123, ""},
		{"1700000000123500000", 1700000000124, ""},
		{"1700000000123499999", 1700000000123, ""},  // as a float64, 1700000000123500032
		{"99999999999999999", 100000000000000, ""},  // year 5138: microseconds still (as a float64 it is 1e17)
		{"100000000000000000", 100000000000, ""},    // 1973-03-03 in nanoseconds
		{"100000000000000000000", 0, "nanoseconds"}, // year 5138 in nanoseconds: none is
		{"NaN", 0, "nanoseconds"},
		// Compact date-times, YYYYMMDDHHMMSS and with milliseconds
		// (Java's yyyyMMddHHmmssSSS, many logs' and exports'): as numbers
		// they are milliseconds or microseconds of the year 2611 at
		// steps that jump at every minute and hour. The first was read
		// so, the second refused ("this looks like microseconds") and
		// then read so from 1e14.
		{"20231201153000", 1701444600000, ""},
		{"20231201153000123", 1701444600123, ""},
		{"20231201156000", 20231201156000, ""},    // no such time: milliseconds (2611)
		{"99999999999999", 99999999999999, ""},    // year 9999: milliseconds (5138)
		{"21991231235959999", 7258118399999, ""},  // 2199
		{"22000101000000000", 22000101000000, ""}, // after 2199: microseconds (2667)
		{"1700000000000000", 1700000000000, ""},   // sixteen digits: microseconds
		{"170000000000000000", 170000000000, ""},  // eighteen digits: nanoseconds
		// YYYYMMDDHHMM, quarter-hourly energy and weather exports': as a
		// number, milliseconds of 1976 (every date-time of 1900 to 2199
		// is one from 1976-01-09 to 1976-12-20) at steps that jump at
		// every hour. It was read so, a day of data 7 s long.
		{"202612071230", 1796646600000, ""},
		{"190001010000", -2208988800000, ""},
		{"219912312359", 7258118340000, ""},
		{"202612071260", 202612071260, ""}, // no such time: milliseconds (1976)
		{"220001010000", 220001010000, ""}, // after 2199: milliseconds (1976)
		{"999999999999", 999999999999, ""}, // 2001-09-09 in milliseconds
		// Ten digits stay unix seconds: YYYYMMDDHH of 1900 to 2199 would be
		// seconds of 2030 to 2039, which a forecast's times reach.
		{"2026120712", 2026120712000, ""},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseTime(tc.in)
			if tc.err != "" {
				require.ErrorContains(t, err, tc.err)
				require.ErrorContains(t, err, tc.in)
				require.ErrorContains(t, err, "unix seconds")
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.want, got)
		})
	}
}

func TestFormatFloatRoundTrip(t *testing.T) {
	for _, v := range []float64{0, -1.25, 1e-300, math.Inf(1), math.Inf(-1), 123456789.123} {
		got, err := ParseValue(FormatFloat(v))
		require.NoError(t, err)
		require.Equal(t, v, got)
	}
	got, err := ParseValue(FormatFloat(math.NaN()))
	require.NoError(t, err)
	require.True(t, math.IsNaN(got))
}

// TestReadExports: files as tools export them read as the same series.
// Grafana's "Download CSV" (and Excel's "CSV UTF-8") start with a UTF-8
// byte order mark and quote the header; Windows tools end lines with CRLF.
func TestReadExports(t *testing.T) {
	for _, tc := range []struct {
		name, in string
	}{
		{"plain", "Time,cpu\n2024-01-01 00:00:00,1\n2024-01-01 00:01:00,2\n"},
		{"byte order mark", "\ufeffTime,cpu\n2024-01-01 00:00:00,1\n2024-01-01 00:01:00,2\n"},
		{"byte order mark, quoted", "\ufeff\"Time\",\"cpu\"\r\n\"2024-01-01 00:00:00\",1\r\n\"2024-01-01 00:01:00\",2\r\n"},
		{"CRLF, no final newline", "Time,cpu\r\n2024-01-01 00:00:00,1\r\n2024-01-01 00:01:00,2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := Read(strings.NewReader(tc.in), "x.csv")
			require.NoError(t, err)
			require.Equal(t, []string{"Time", "cpu"}, s.Header)
			require.Equal(t, []int64{1704067200000, 1704067260000}, s.Times)
			require.Equal(t, []float64{1, 2}, s.Values)
		})
	}
}

// TestReadSeparators: spreadsheets in locales whose decimal mark is a
// comma (LibreOffice and Excel in German, French, Dutch...) save CSV with
// semicolons between fields and commas in numbers; "Text (Tab delimited)"
// uses tabs. Read with commas, the header was one column and the file was
// refused as "header has 1 column(s)".
func TestReadSeparators(t *testing.T) {
	for _, tc := range []struct {
		name, in string
	}{
		{"semicolons", "Time;cpu\n2024-01-01 00:00:00;1\n2024-01-01 00:01:00;2.5\n"},
		{"semicolons, decimal commas", "\ufeff\"Time\";\"cpu\"\r\n2024-01-01 00:00:00;1\r\n2024-01-01 00:01:00;\"2,5\"\r\n"},
		{"semicolons, a comma quoted in the header", "\"Time\";\"cpu, %\"\n2024-01-01 00:00:00;1\n2024-01-01 00:01:00;2,5\n"},
		{"tabs", "Time\tcpu\n2024-01-01 00:00:00\t1\n2024-01-01 00:01:00\t2.5\n"},
		{"tabs, decimal commas", "Time\tcpu\n2024-01-01 00:00:00\t1\n2024-01-01 00:01:00\t2,5\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := Read(strings.NewReader(tc.in), "x.csv")
			require.NoError(t, err)
			require.Equal(t, "Time", s.Header[0])
			require.Equal(t, []int64{1704067200000, 1704067260000}, s.Times)
			require.Equal(t, []float64{1, 2.5}, s.Values)
		})
	}
	// With commas between fields, a comma in a number is not a decimal
	// mark, and a value such as "1.234,5" (a thousands separator) is not
	// guessed at.
	for _, in := range []string{"t,v\n1,\"2,5\"\n", "t;v\n1;1.234,5\n"} {
		_, err := Read(strings.NewReader(in), "x.csv")
		require.ErrorContains(t, err, "x.csv:2: value")
	}
}

// TestAppendFieldAsCSVWriter: a row written with AppendField reads back
// as encoding/csv's Writer writes it, byte for byte.
func TestAppendFieldAsCSVWriter(t *testing.T) {
	fields := []string{"", "a", "1.5", "a,b", `say "hi"`, `"`, "x\ny", "x\r\ny", "\r", " lead", "\tlead", "trail ", `\.`, `\.x`,
		"\u00a0nbsp", "\u2003em", "é,", "2024-01-01 00:00:00", "+Inf"}
	var buf bytes.Buffer
	w := csv.NewWriter(&buf)
	require.NoError(t, w.Write(fields))
	w.Flush()
	var got []byte
	for i, f := range fields {
		if i > 0 {
			got = append(got, ',')
		}
		got = AppendField(got, f)
	}
	require.Equal(t, buf.String(), string(append(got, '\n')))
}

// TestReadCompactMinutes: a quarter-hourly export dated YYYYMMDDHHMM (as
// energy market and weather services write it, here with semicolons and
// decimal commas) is read 15 minutes apart, across a day's end, not as
// milliseconds of 1976 spaced 15 ms and 8,841 ms apart.
func TestReadCompactMinutes(t *testing.T) {
	in := "Zeitstempel;Wert\n202612072315;1,5\n202612072330;1,25\n202612072345;2\n202612080000;2,5\n202612080015;3\n"
	s, err := Read(strings.NewReader(in), "x.csv")
	require.NoError(t, err)
	start := int64(1796685300000) // 2026-12-07T23:15:00Z
	require.Equal(t, []int64{start, start + 900_000, start + 1_800_000, start + 2_700_000, start + 3_600_000}, s.Times)
	require.Equal(t, []float64{1.5, 1.25, 2, 2.5, 3}, s.Values)
	require.True(t, IsCompactDate("202612072315"))
	require.Zero(t, EpochUnit("202612072315"))
}
