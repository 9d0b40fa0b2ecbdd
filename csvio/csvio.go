// Package csvio reads the CSV series that omen's batch commands (backtest,
// forecast) take: a header, then rows whose first two columns are a
// timestamp and a value. Other columns are kept as they are.
package csvio

import (
	"bufio"
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Series is one CSV file held in memory.
type Series struct {
	Header []string   // the header row as read
	Rows   [][]string // the records after the header, as read
	Times  []int64    // Rows[i][0] as unix milliseconds
	Values []float64  // Rows[i][1]; an empty cell is NaN
}

// ReadFile reads the series in path. Errors name the file and line.
func ReadFile(path string) (*Series, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return Read(f, path)
}

// Read reads a whole series from r into memory; name is used in error
// messages. The batch commands stream with a Reader instead, which holds
// one row at a time.
//
// Rows are kept in file order, which is the order the streaming engines see
// them in, as they would see samples arrive. A timestamp that goes back is
// kept rather than rejected or reordered: real exports have them (NAB's
// machine_temperature_system_failure.csv does), and reordering would show
// the engines a sequence that never happened; the callers skip such rows as
// the live path does (the TSDB refuses them as out of order).
func Read(r io.Reader, name string) (*Series, error) {
	rd, err := NewReader(r, name)
	if err != nil {
		return nil, err
	}
	s := &Series{Header: rd.Header}
	for {
		rec, ts, v, err := rd.Next()
		if errors.Is(err, io.EOF) {
			return s, nil
		}
		if err != nil {
			return nil, err
		}
		s.Rows = append(s.Rows, slices.Clone(rec))
		s.Times = append(s.Times, ts)
		s.Values = append(s.Values, v)
	}
}

// Reader reads a series row by row, in file order (see Read), so that a
// file of any size is processed in the memory of one row.
type Reader struct {
	Header []string // the header row as read
	cr     *csv.Reader
	name   string

	rows, back int   // rows read, and those at or before latest
	latest     int64 // the latest time read, if rows > 0
	inOrder    bool  // whether the last row was after every one before it
	// decimalComma: the fields are separated by semicolons or tabs, so a
	// comma in a value is a decimal mark (see separator).
	decimalComma bool
}

// NewReader reads the header row from r; name is used in error messages.
func NewReader(r io.Reader, name string) (*Reader, error) {
	br, err := skipBOM(r, name)
	if err != nil {
		return nil, err
	}
	cr := csv.NewReader(br)
	cr.Comma = separator(br)
	cr.FieldsPerRecord = -1
	cr.ReuseRecord = true
	header, err := cr.Read()
	if errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%s: empty file: want a header row", name)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if len(header) < 2 {
		return nil, fmt.Errorf("%s:1: header has %d column(s), want at least timestamp,value", name, len(header))
	}
	if isSample(header) {
		// Silently taken as the header, the file's first sample would be
		// lost and its values named by its numbers.
		return nil, fmt.Errorf("%s:1: no header row: the first row is a sample (%s,%s); add a header line such as timestamp,value", name, header[0], header[1])
	}
	return &Reader{Header: slices.Clone(header), cr: cr, name: name, decimalComma: cr.Comma != ','}, nil
}

// separator returns the field separator of the file br starts, judged by
// its first line: a comma if it has one, else a semicolon or a tab if it
// has one. Spreadsheets in locales whose decimal mark is a comma (Excel
// and LibreOffice in German, French, Dutch...) save "CSV" with semicolons,
// and "Text (Tab delimited)" with tabs; their header has no comma (a
// header cell with a comma in it is rare, a file of one column useless).
//
// What is between quotes does not count: "Time";"cpu, %" is separated by
// semicolons.
func separator(br *bufio.Reader) rune {
	b, _ := br.Peek(br.Size()) // fewer at the end of a short file
	var seen [3]bool           // a comma, a semicolon, a tab
	quoted := false
line:
	for _, c := range b {
		switch {
		case c == '"':
			quoted = !quoted
		case quoted:
		case c == '\n':
			break line
		case c == ',':
			seen[0] = true
		case c == ';':
			seen[1] = true
		case c == '\t':
			seen[2] = true
		}
	}
	for i, c := range []rune{',', ';', '\t'} {
		if seen[i] {
			return c
		}
	}
	return ','
}

// isSample reports whether rec reads as a timestamp and a number, which no
// header does.
func isSample(rec []string) bool {
	if _, err := ParseTime(rec[0]); err != nil || strings.TrimSpace(rec[1]) == "" {
		return false
	}
	_, err := ParseValue(rec[1])
	return err == nil
}

// Next returns the next row, its timestamp as unix milliseconds and its
// value (NaN for an empty cell), or io.EOF after the last row. Errors name
// the file and line. rec is only valid until the next call: its slice is
// reused (its strings are not).
func (r *Reader) Next() (rec []string, tsMillis int64, v float64, err error) {
	rec, err = r.cr.Read()
	if errors.Is(err, io.EOF) {
		return nil, 0, 0, io.EOF
	}
	if err != nil {
		return nil, 0, 0, fmt.Errorf("%s: %w", r.name, err)
	}
	line, _ := r.cr.FieldPos(0) // only valid for a record read without error
	if len(rec) < 2 {
		return nil, 0, 0, fmt.Errorf("%s:%d: row has %d column(s), want at least 2", r.name, line, len(rec))
	}
	if len(rec) > len(r.Header) {
		// Its extra fields would land under the columns appended after
		// the header's.
		return nil, 0, 0, fmt.Errorf("%s:%d: row has %d columns, the header %d", r.name, line, len(rec), len(r.Header))
	}
	if tsMillis, err = ParseTime(rec[0]); err != nil {
		return nil, 0, 0, fmt.Errorf("%s:%d: %w", r.name, line, err)
	}
	if v, err = r.parseValue(rec[1]); err != nil {
		return nil, 0, 0, fmt.Errorf("%s:%d: %w", r.name, line, err)
	}
	r.inOrder = r.rows == 0 || tsMillis > r.latest
	if r.inOrder {
		r.latest = tsMillis
	} else {
		r.back++
	}
	r.rows++
	return rec, tsMillis, v, nil
}

// InOrder reports whether the row Next last returned is later than every
// row before it. The live path sees only those: the TSDB refuses a sample
// at or before a series' latest as out of order or duplicate.
func (r *Reader) InOrder() bool { return r.inOrder }

// CheckOrder, called after the last row, refuses a file in which half of
// the rows or more were at or before an earlier one: not one series in
// time order with a few stragglers (which real exports have, and which
// are skipped), but a table exported newest first or several series
// interleaved, of which the engines would see only the first row or a
// fraction.
func (r *Reader) CheckOrder() error {
	if r.back == 0 || 2*r.back < r.rows {
		return nil
	}
	return fmt.Errorf("%s: %d of %d rows are at or before the time of an earlier row: want one series per file, oldest first (is it newest first, or several series interleaved?)", r.name, r.back, r.rows)
}

// Each calls fn with every remaining row, as Next returns it, until the
// end of the file, a read error, fn's error or ctx's cancellation (checked
// every few thousand rows, which a file of millions of rows needs to stop
// promptly), and returns that error or nil at the end of the file.
func (r *Reader) Each(ctx context.Context, fn func(rec []string, tsMillis int64, v float64) error) error {
	for i := 0; ; i++ {
		if i%4096 == 0 && ctx.Err() != nil {
			return ctx.Err()
		}
		rec, ts, v, err := r.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if err := fn(rec, ts, v); err != nil {
			return err
		}
	}
}

// skipBOM returns r without the UTF-8 byte order mark it may start with, as
// Grafana's CSV export and Excel's "CSV UTF-8" write it: left in, it sticks
// to the first header cell or, before a quoted one, fails the parse. A
// UTF-16 one (Excel's "Unicode Text", PowerShell 5.1's Export-Csv) is an
// error that says so: read as bytes, its cells have NULs between letters.
func skipBOM(r io.Reader, name string) (*bufio.Reader, error) {
	br := bufio.NewReader(r)
	b, _ := br.Peek(3) // fewer at the end of a short file
	switch {
	case string(b) == "\ufeff":
		_, _ = br.Discard(3)
	case len(b) >= 2 && (b[0] == 0xff && b[1] == 0xfe || b[0] == 0xfe && b[1] == 0xff):
		return nil, fmt.Errorf("%s: UTF-16 text: save or convert it as UTF-8 (iconv -f UTF-16 -t UTF-8)", name)
	}
	return br, nil
}

// timeLayouts are tried in order. Parse takes a fraction after the seconds
// in any of them.
var timeLayouts = []string{
	time.RFC3339Nano,
	// RFC 3339 with a space for the T (section 5.6 allows it), as pandas'
	// to_csv writes a time zone aware index.
	"2006-01-02 15:04:05Z07:00",
	"2006-01-02 15:04:05",
	"2006-01-02 15:04:05.999999999",
	"2006-01-02T15:04:05",
	"2006-01-02 15:04",
	"2006-01-02T15:04",
	"2006-01-02",
}

// The numbers ParseTime reads as unix time, by size: up to maxEpochSeconds
// (1e11, the year 5138) seconds; above it milliseconds, from 1e14
// microseconds, from 1e17 nanoseconds, to maxEpochNanos: each unit from
// 1973-03-03 to the year 5138, so a number's size says its unit. No
// series is dated after the year 5000, nor, in practice, between 1970 and
// 1973. Grafana's CSV export without "Formatted data", as many exporters,
// writes epoch milliseconds; Telegraf's CSV serializer (csv_timestamp_format
// unix_us, unix_ns), VictoriaMetrics's /api/v1/export/csv (unix_ns) and
// pandas' int64 times write micro- or nanoseconds.
const (
	maxEpochSeconds = 1e11
	minEpochMicros  = 1e14
	minEpochNanos   = 1e17
	maxEpochNanos   = 1e20
)

// ParseTime parses unix seconds (possibly fractional) or, by the number's
// size (see maxEpochSeconds), unix milliseconds, microseconds or
// nanoseconds, RFC 3339 (with a T or a space), or "YYYY-MM-DD[ HH:MM[:SS]]"
// and "YYYYMMDD[HHMM[SS[mmm]]]" (taken as UTC, see compactDate) into unix
// milliseconds, rounded to the nearest.
func ParseTime(s string) (int64, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, errors.New("empty timestamp")
	}
	if t, ok := compactDate(s); ok {
		return t.UnixMilli(), nil
	}
	if f, err := strconv.ParseFloat(s, 64); err == nil {
		switch epochUnit(s, f) {
		case time.Nanosecond:
			return toMillis(s, f, 1e6), nil
		case time.Microsecond:
			return toMillis(s, f, 1e3), nil
		case time.Millisecond:
			return int64(math.Round(f)), nil
		case time.Second:
			return int64(math.Round(f * 1000)), nil
		}
		return 0, fmt.Errorf("timestamp %q: want unix seconds, milliseconds, microseconds or nanoseconds (from 1973 on, by size) or a date", s)
	}
	for _, l := range timeLayouts {
		if t, err := time.Parse(l, s); err == nil {
			return t.UnixMilli(), nil
		}
	}
	return 0, fmt.Errorf("timestamp %q: want unix seconds, RFC 3339, YYYY-MM-DD HH:MM:SS or YYYYMMDD", s)
}

// toMillis is the number s (f parsed) of units per millisecond per in
// unix milliseconds, rounded half away from zero; exactly for an integer
// (float64 holds nanoseconds of today to 256 ns only).
func toMillis(s string, f float64, per int64) int64 {
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		q, r := n/per, n%per
		switch {
		case r >= (per+1)/2:
			q++
		case r <= -(per+1)/2:
			q--
		}
		return q
	}
	return int64(math.Round(f / float64(per)))
}

// EpochUnit is the unit ParseTime reads s in if s is a number it takes as
// unix time (time.Second, Millisecond, Microsecond or Nanosecond), else 0
// (a date, RFC 3339, or not a time).
func EpochUnit(s string) time.Duration {
	s = strings.TrimSpace(s)
	if _, ok := compactDate(s); ok {
		return 0
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return 0
	}
	return epochUnit(s, f)
}

// epochUnit is the unit of the number s, f parsed, by its size (see
// maxEpochSeconds); 0 for NaN or one too large. An integer is sized
// exactly: as a float64, 1e17-1 is 1e17.
func epochUnit(s string, f float64) time.Duration {
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		// Every int64 is below maxEpochNanos.
		switch {
		case n >= minEpochNanos || n <= -minEpochNanos:
			return time.Nanosecond
		case n >= minEpochMicros || n <= -minEpochMicros:
			return time.Microsecond
		case n > maxEpochSeconds || n < -maxEpochSeconds:
			return time.Millisecond
		}
		return time.Second
	}
	switch a := math.Abs(f); {
	case math.IsNaN(f) || a >= maxEpochNanos:
		return 0
	case a >= minEpochNanos:
		return time.Nanosecond
	case a >= minEpochMicros:
		return time.Microsecond
	case a > maxEpochSeconds:
		return time.Millisecond
	}
	return time.Second
}

// IsCompactDate reports whether ParseTime reads s as a YYYYMMDD date or
// a compact date-time (see compactDate).
func IsCompactDate(s string) bool {
	_, ok := compactDate(strings.TrimSpace(s))
	return ok
}

// compactDate parses a daily series' YYYYMMDD date (exports from
// spreadsheets and many public datasets), which would otherwise pass for
// unix seconds in 1970 (20240101 s is 1970-08-23) and put a year of days
// 100 s apart. Eight digits that form a date from 1900 to 2199 are read
// as one: unix seconds of that size (1970-1973) do not occur in practice.
// So are twelve, fourteen and seventeen that form a date-time of those
// years, YYYYMMDDHHMM (quarter-hourly energy and weather exports),
// YYYYMMDDHHMMSS and YYYYMMDDHHMMSSmmm (Java's yyyyMMddHHmmssSSS, many
// logs' and exports'): as numbers, milliseconds of 1976 and milliseconds
// and microseconds of the years 2572 to 2667, at steps that jump at every
// hour or minute. Ten digits are not read as YYYYMMDDHH: as unix seconds
// they are 2030 to 2039, times a forecast reaches.
func compactDate(s string) (time.Time, bool) {
	if strings.Trim(s, "0123456789") != "" {
		return time.Time{}, false
	}
	var t time.Time
	var err error
	switch len(s) {
	case 8:
		t, err = time.Parse("20060102", s)
	case 12:
		t, err = time.Parse("200601021504", s)
	case 14:
		t, err = time.Parse("20060102150405", s)
	case 17:
		t, err = time.Parse("20060102150405", s[:14])
		if err == nil {
			ms, _ := strconv.Atoi(s[14:]) // three digits
			t = t.Add(time.Duration(ms) * time.Millisecond)
		}
	default:
		return time.Time{}, false
	}
	if err != nil || t.Year() < 1900 || t.Year() > 2199 {
		return time.Time{}, false
	}
	return t, true
}

// parseValue is ParseValue, but for a file separated by semicolons or tabs
// (see separator) a value with one comma and no point, "2,5", is read
// with the comma as its decimal mark. "1.234,5" is refused: a thousands
// separator is not guessed at.
func (r *Reader) parseValue(s string) (float64, error) {
	if r.decimalComma && strings.Count(s, ",") == 1 && !strings.Contains(s, ".") {
		v, err := ParseValue(strings.Replace(s, ",", ".", 1))
		if err != nil {
			return 0, fmt.Errorf("value %q is not a number", strings.TrimSpace(s))
		}
		return v, nil
	}
	return ParseValue(s)
}

// MoreSeries returns, quoted and comma-separated, the names of the
// columns after the second whose cell in rec, the first row, is a number,
// or "" if there are none: a file of several series (Grafana's CSV of a
// panel "joined by time" has a column per series) of which the batch
// commands take the second column only. A column of labels is not named.
func MoreSeries(header, rec []string) string {
	var b strings.Builder
	for i := 2; i < len(rec) && i < len(header); i++ {
		if strings.TrimSpace(rec[i]) == "" {
			continue
		}
		if _, err := ParseValue(rec[i]); err != nil {
			continue
		}
		if b.Len() > 0 {
			b.WriteString(", ")
		}
		b.WriteString(strconv.Quote(header[i]))
	}
	return b.String()
}

// ParseValue parses a sample value. An empty cell is a missing value (NaN);
// Prometheus's spellings NaN, +Inf and -Inf are accepted.
func ParseValue(s string) (float64, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return math.NaN(), nil
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return 0, fmt.Errorf("value %q is not a number", s)
	}
	return v, nil
}

// FormatFloat formats v the way Prometheus's text format does, so that
// output CSVs round-trip through ParseValue.
func FormatFloat(v float64) string {
	return string(AppendFloat(nil, v))
}

// AppendFloat appends v to dst as FormatFloat formats it.
func AppendFloat(dst []byte, v float64) []byte {
	switch {
	case math.IsNaN(v):
		return append(dst, "NaN"...)
	case math.IsInf(v, 1):
		return append(dst, "+Inf"...)
	case math.IsInf(v, -1):
		return append(dst, "-Inf"...)
	}
	return strconv.AppendFloat(dst, v, 'g', -1, 64)
}

// AppendField appends field to dst as encoding/csv's Writer writes a field
// (a comma its separator, lines ending in \n): quoted, its quotes doubled,
// if it holds a comma, a quote, a \r or \n, starts with a space, or is \.;
// else as it is. A row written so costs no allocation, where the Writer
// wants strings (backtest's four numbers a row were four).
func AppendField(dst []byte, field string) []byte {
	if !fieldNeedsQuotes(field) {
		return append(dst, field...)
	}
	dst = append(dst, '"')
	for {
		i := strings.IndexByte(field, '"')
		if i < 0 {
			break
		}
		dst = append(append(dst, field[:i+1]...), '"')
		field = field[i+1:]
	}
	return append(append(dst, field...), '"')
}

// fieldNeedsQuotes is encoding/csv's Writer.fieldNeedsQuotes for a comma.
func fieldNeedsQuotes(field string) bool {
	if field == "" {
		return false
	}
	if field == `\.` || strings.ContainsAny(field, ",\"\r\n") {
		return true
	}
	r, _ := utf8.DecodeRuneInString(field)
	return unicode.IsSpace(r)
}
