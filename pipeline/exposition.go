package pipeline

import (
	"bufio"
	"io"
	"math"
	"strconv"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
)

// exposedFamilies is the order WriteOutputs writes the families in.
var exposedFamilies = [...]string{familyModelReady, familyIncidentPeak, familyIncidentDuration, FamilyScore, FamilyYhat, FamilyYhatLower, FamilyYhatUpper, FamilyForecast, FamilyForecastLower, FamilyForecastUpper}

// WriteOutputs writes what Collector would give the registry for the
// per-series families (omen_model_ready, the incidents and the outputs) straight in the
// Prometheus text format 0.0.4, one family after the other. At 100k series
// the registry path builds half a million const metrics and their label
// pairs per scrape (~450 MB allocated); this writes lines into w's buffer
// and allocates per worker, not per series. Pair it with
// AccuracyCollector on the registry.
func (p *Pipeline) WriteOutputs(w io.Writer) error {
	bw := bufio.NewWriterSize(w, 64<<10)
	var line []byte
	var err error
	buf := walkBufs.Get().(*walkBuf)
	defer walkBufs.Put(buf)
	families := make([]string, 0, len(exposedFamilies))
	for _, fam := range exposedFamilies {
		if isSelfFamily(fam) || p.family[fam] {
			families = append(families, fam)
		}
	}
	header := "" // the family whose header is written: walkOutputs walks one family after the other
	p.walkOutputs(families, buf, func(name string, ls *outLabelSet, v float64) {
		if err != nil {
			return
		}
		if name != header {
			header = name
			line = append(line[:0], "# HELP "...)
			line = append(line, name...)
			line = append(line, ' ')
			line = appendHelp(line, outputHelp[name])
			line = append(line, "\n# TYPE "...)
			line = append(line, name...)
			line = append(line, " gauge\n"...)
			if _, err = bw.Write(line); err != nil {
				return
			}
		}
		line = appendSample(line[:0], name, ls, v)
		_, err = bw.Write(line)
	})
	if err != nil {
		return err
	}
	return bw.Flush()
}

// appendSample appends `name{l="v",...} value\n`, escaped as the text
// format wants.
func appendSample(b []byte, name string, ls *outLabelSet, v float64) []byte {
	b = append(b, name...)
	if len(ls.names) > 0 {
		b = append(b, '{')
		for i, n := range ls.names {
			if i > 0 {
				b = append(b, ',')
			}
			if ls.utf8Names && !model.LegacyValidation.IsValidLabelName(n) {
				n = escapedName(ls.names, i)
			}
			b = append(b, n...)
			b = append(b, '=', '"')
			b = appendEscaped(b, ls.vals[i], true)
			b = append(b, '"')
		}
		b = append(b, '}')
	}
	b = append(b, ' ')
	switch {
	case math.IsNaN(v):
		b = append(b, "NaN"...)
	case math.IsInf(v, 1):
		b = append(b, "+Inf"...)
	case math.IsInf(v, -1):
		b = append(b, "-Inf"...)
	case v == 0:
		// Negative zero too, as expfmt writes it: AppendFloat gives "-0".
		b = append(b, '0')
	default:
		b = strconv.AppendFloat(b, v, 'g', -1, 64)
	}
	return append(b, '\n')
}

// appendEscaped escapes a backslash and a newline (and, in label values, a
// double quote) as the text format requires. It appends the runs between
// them whole: strings.ContainsAny, which went first, took a tenth of a
// scrape's CPU for a set of three bytes, as it searches by rune.
func appendEscaped(b []byte, s string, quote bool) []byte {
	start := 0
	for i := 0; i < len(s); i++ {
		var esc string
		switch s[i] {
		case '\\':
			esc = `\\`
		case '\n':
			esc = `\n`
		case '"':
			if !quote {
				continue
			}
			esc = `\"`
		default:
			continue
		}
		b = append(b, s[start:i]...)
		b = append(b, esc...)
		start = i + 1
	}
	return append(b, s[start:]...)
}

func appendHelp(b []byte, help string) []byte { return appendEscaped(b, help, false) }

// hasUTF8Names reports whether some label name of ls is outside the legacy
// character set ([a-zA-Z_][a-zA-Z0-9_]*), which remote write accepts.
func hasUTF8Names(ls labels.Labels) bool {
	found := false
	ls.Range(func(l labels.Label) {
		if !found && !model.LegacyValidation.IsValidLabelName(l.Name) {
			found = true
		}
	})
	return found
}

// escapedName returns names[i], which the text format 0.0.4 cannot carry,
// escaped as client_golang escapes the registry's families for a scraper
// that did not ask for UTF-8 names: dots and the like to underscores. Where
// that gives a name another label of the series has or gets too
// (service.name beside service_name), the name is value-encoded instead
// (U__service_2e_name), which is unique: two labels of one name would fail
// the whole scrape.
func escapedName(names []string, i int) string {
	u := model.EscapeName(names[i], model.UnderscoreEscaping)
	for j, o := range names {
		if j == i {
			continue
		}
		if o == u || (!model.LegacyValidation.IsValidLabelName(o) && model.EscapeName(o, model.UnderscoreEscaping) == u) {
			return model.EscapeName(names[i], model.ValueEncodingEscaping)
		}
	}
	return u
}
