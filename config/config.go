// Package config holds omen's configuration file (--config.file): which
// series are scored and how, derived inputs evaluated with PromQL, and the
// alerting settings that `omen rules generate` turns into Prometheus rules.
//
// The file is YAML. Every field has a default, so an empty file (or none) is
// a valid configuration that scores every series.
package config

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	config_util "github.com/prometheus/common/config"
	"github.com/prometheus/common/model"
	promconfig "github.com/prometheus/prometheus/config"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/prometheus/prometheus/template"
	"gopkg.in/yaml.v3"
)

// Config is the whole file.
type Config struct {
	// Include lists series selectors whose series are scored; empty means
	// every series.
	Include []string `yaml:"include,omitempty"`
	// Exclude lists series selectors whose series are never scored, even if
	// included.
	Exclude []string `yaml:"exclude,omitempty"`
	// Defaults apply to every scored series.
	Defaults Scoring `yaml:"defaults,omitempty"`
	// Overrides change Defaults for the series their selector matches; the
	// first matching override wins.
	Overrides []Override `yaml:"overrides,omitempty"`
	// Derived are inputs computed from PromQL expressions over the embedded
	// TSDB, each scored like an ingested series.
	Derived []Derived `yaml:"derived,omitempty"`
	// Alerting configures the rules that `omen rules generate` prints.
	Alerting Alerting `yaml:"alerting,omitempty"`
	// RemoteWrite forwards the outputs upstream: Prometheus's remote_write
	// section, with all its settings (authentication, TLS, headers, queue,
	// write relabelling), beside any --remote-write.url.
	RemoteWrite []*promconfig.RemoteWriteConfig `yaml:"remote_write,omitempty"`
	// RemoteRead is the upstream new series' history is read from for
	// their warm start: Prometheus's remote_read section, so that its
	// credentials (basic_auth with password_file, authorization with
	// credentials_file, oauth2), tls_config, headers (a tenant's
	// X-Scope-OrgID) and proxy are given as in Prometheus, not in a URL
	// on the command line. One entry at most: omen warms from one
	// upstream (--backfill.remote-read-url, which this replaces).
	RemoteRead []*promconfig.RemoteReadConfig `yaml:"remote_read,omitempty"`

	includeM, excludeM [][]*labels.Matcher
}

// Scoring holds the per-selection options of the detectors and forecasters.
type Scoring struct {
	// Direction is "both" (default), "up" or "down": which deviations count.
	Direction string `yaml:"direction,omitempty"`
	// FalseAlarmRate is the share of normal samples allowed to score above 1
	// (default 0.0015, the detector's own default, which the NAB benchmark
	// measures).
	FalseAlarmRate float64 `yaml:"false_alarm_rate,omitempty"`
	// MinDeviationAbs and MinDeviationRel suppress deviations from the
	// expected value smaller than this absolute amount or this fraction of it.
	MinDeviationAbs float64 `yaml:"min_deviation_abs,omitempty"`
	MinDeviationRel float64 `yaml:"min_deviation_rel,omitempty"`
	// ForecastHorizons are the horizons of the forecast series (default 5m,
	// 15m, 30m; at most MaxForecastHorizons; an explicit empty list: no
	// forecasts).
	ForecastHorizons []model.Duration `yaml:"forecast_horizons,omitempty"`
	// Flatline turns on the detector's flat member: a run of samples
	// equal to the one before, longer than the series makes (an exporter
	// serving a cached value, a rate frozen), scores above 1 (at most
	// 1.5, the warning tier). Off by default: on NAB it flags an
	// unlabelled two-hour collection outage of the tweet series and the
	// standard score falls from 75.16 to 74.93 (docs/benchmarks.md), so it
	// is for the selections where a stuck value is a failure.
	Flatline bool `yaml:"flatline,omitempty"`

	// set names the fields the file gives, so that an explicit zero (a
	// minimum deviation of 0 in an override, no horizons) is not taken
	// for "inherit".
	set map[string]bool
}

// MaxForecastHorizons bounds the horizons of one selection: each costs
// three output series per input.
const MaxForecastHorizons = 8

// Override applies Scoring to the series Match selects.
type Override struct {
	Match   string `yaml:"match"`
	Scoring `yaml:",inline"`

	matchers []*labels.Matcher
}

// Derived is a named PromQL expression evaluated every Interval. Each series
// of its result is scored as an input whose `for` label is Name.
//
// Or, with Members instead of Expr, a multivariate group: each member's
// expression is evaluated every Interval, its series are matched across
// the members by the labels in By (the cpu, memory, errors and latency of
// one pod: by [namespace, pod]), and each group's values are scored
// together, as one input with By's labels whose `for` label is Name.
type Derived struct {
	Name     string         `yaml:"name"`
	Expr     string         `yaml:"expr,omitempty"`
	By       []string       `yaml:"by,omitempty"`
	Members  []Member       `yaml:"members,omitempty"`
	Interval model.Duration `yaml:"interval,omitempty"` // default 30s
	Scoring  `yaml:",inline"`

	sig string
}

// Signature identifies what d computes: its expression, or its group's
// labels and members. Models learnt under another signature learnt
// another quantity.
func (d *Derived) Signature() string { return d.sig }

// Member is one expression of a multivariate group.
type Member struct {
	Name string `yaml:"name"`
	Expr string `yaml:"expr"`
}

// OutputFamilies are the metric names of omen's outputs, which a derived
// input may not take.
var OutputFamilies = [...]string{"anomaly_score", "yhat", "yhat_lower", "yhat_upper", "forecast", "forecast_lower", "forecast_upper"}

// MaxGroupMembers bounds a group's members (detect.MaxGroupMembers).
const MaxGroupMembers = 8

// Alerting configures generated alerting rules.
type Alerting struct {
	// Warning and Critical are the severity tiers on anomaly_score.
	Warning  Tier `yaml:"warning,omitempty"`  // default score 1 for 5m
	Critical Tier `yaml:"critical,omitempty"` // default score 2 for 5m
	// KeepFiringFor keeps the anomaly alerts firing this long after their
	// incident's gauges leave /metrics, so a failed scrape of omen or its
	// restart does not resolve them (and fire them again); nil means 2m,
	// 0 none (Prometheus before 2.42 has no keep_firing_for).
	KeepFiringFor *model.Duration `yaml:"keep_firing_for,omitempty"`
	// GroupBy are the labels anomaly pages aggregate on (default namespace, job).
	GroupBy []string `yaml:"group_by,omitempty"`
	// RunbookURL is the base URL of the runbooks; the alert name is appended,
	// after a "/" unless it ends in one of "/#=?".
	RunbookURL string `yaml:"runbook_url,omitempty"`
	// Capacity lists forecast-based capacity alerts.
	Capacity []Capacity `yaml:"capacity,omitempty"`

	set map[string]bool // the fields the file gives
}

// Tier is one severity level of the anomaly alerts.
type Tier struct {
	Score float64        `yaml:"score,omitempty"`
	For   model.Duration `yaml:"for,omitempty"` // an explicit 0s fires at once

	set map[string]bool
}

// Capacity alerts when a forecast bound of the input named For reaches its
// limit within Horizon: forecast_upper rising to it (Direction up, a disk
// filling), or forecast_lower falling to it (down, its free bytes running
// out). The limit is a constant, Limit, or a series, LimitExpr, matched
// with the forecasts on the labels On, or without On on all of the
// input's labels. Once firing, the alert holds until the bound is back
// beyond the limit by ResolveMargin (see Margin).
type Capacity struct {
	Name      string         `yaml:"name"`
	For       string         `yaml:"for"`                 // the input (value of the `for` label)
	Match     string         `yaml:"match,omitempty"`     // optional extra series selector on the forecast
	Direction string         `yaml:"direction,omitempty"` // up (default) or down
	Limit     float64        `yaml:"limit,omitempty"`     // a limit 0 the file gives is kept (set)
	LimitExpr string         `yaml:"limit_expr,omitempty"`
	On        []string       `yaml:"on,omitempty"`      // the labels LimitExpr's series match the forecasts' on
	Horizon   model.Duration `yaml:"horizon,omitempty"` // default 30m
	// ResolveMargin is how far back from the limit the bound must come for
	// a firing alert to resolve: a percentage of the limit ("5%", the
	// default) or a number in the limit's unit ("1e9"); "0" turns it off.
	ResolveMargin string `yaml:"resolve_margin,omitempty"`

	set map[string]bool
}

// DefaultResolveMargin is a capacity's ResolveMargin when none is given.
const DefaultResolveMargin = "5%"

// Margin returns the capacity's ResolveMargin as a number: a fraction of
// the limit's magnitude if relative, else in the limit's unit. The
// capacity must have been validated.
func (c *Capacity) Margin() (m float64, relative bool) {
	m, relative, _ = parseMargin(c.ResolveMargin)
	return m, relative
}

// parseMargin parses a resolve margin: a percentage below 100 or a finite
// number, neither negative.
func parseMargin(s string) (m float64, relative bool, err error) {
	num, relative := strings.CutSuffix(strings.TrimSpace(s), "%")
	m, err = strconv.ParseFloat(strings.TrimSpace(num), 64)
	switch {
	case err != nil:
		return 0, false, errors.New("want a percentage of the limit (5%) or a number in its unit (1e9)")
	case math.IsNaN(m) || math.IsInf(m, 0) || m < 0:
		return 0, false, errors.New("want a finite number, 0 or more")
	case relative && m >= 100:
		return 0, false, errors.New("want a percentage below 100")
	case relative:
		return m / 100, true, nil
	}
	return m, false, nil
}

// Capacity directions: the forecast bound rising to the limit, or falling
// to it.
const (
	CapacityUp   = "up"
	CapacityDown = "down"
)

// Default returns the configuration used when no file is given.
func Default() *Config {
	c := &Config{}
	if err := c.validate(); err != nil {
		panic(err) // the zero config is always valid; a failure here is a bug
	}
	return c
}

// LoadFile reads and validates the configuration in path.
func LoadFile(path string) (*Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	c, err := Load(b)
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	// Credential and certificate files are relative to the file, as in
	// Prometheus's configuration.
	for _, rw := range c.RemoteWrite {
		rw.SetDirectory(filepath.Dir(path))
	}
	for _, rr := range c.RemoteRead {
		rr.SetDirectory(filepath.Dir(path))
	}
	return c, nil
}

// durationKeys are the keys whose values are durations (a list of them for
// forecast_horizons); "for" is one only in an alert tier, the input's name
// in a capacity alert.
var durationKeys = map[string]bool{"forecast_horizons": true, "interval": true, "keep_firing_for": true, "horizon": true}

// badDuration returns, for the first duration in the document at n that
// does not parse, an error naming its line and field: model.Duration's own
// names only the value, and a reload that failed on "1x" left the user to
// search the file for it. path is n's.
func badDuration(n *yaml.Node, path string) error {
	switch n.Kind {
	case yaml.DocumentNode:
		for _, c := range n.Content {
			if err := badDuration(c, path); err != nil {
				return err
			}
		}
	case yaml.SequenceNode:
		for i, c := range n.Content {
			if err := badDuration(c, fmt.Sprintf("%s[%d]", path, i)); err != nil {
				return err
			}
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			p := strings.TrimPrefix(path+"."+k.Value, ".")
			tier := k.Value == "for" && (strings.HasSuffix(path, "warning") || strings.HasSuffix(path, "critical"))
			if !durationKeys[k.Value] && !tier {
				if err := badDuration(v, p); err != nil {
					return err
				}
				continue
			}
			vals := []*yaml.Node{v}
			if v.Kind == yaml.SequenceNode {
				vals = v.Content
			}
			for j, x := range vals {
				if x.Kind != yaml.ScalarNode {
					continue
				}
				if _, err := model.ParseDuration(x.Value); err != nil {
					field := p
					if v.Kind == yaml.SequenceNode {
						field = fmt.Sprintf("%s[%d]", p, j)
					}
					return fmt.Errorf("line %d: %s %q: %w", x.Line, field, x.Value, err)
				}
			}
		}
	}
	return nil
}

// badRemoteWrite returns the first remote_write (or remote_read) entry of the document at
// root that does not decode, its error prefixed with the entry's index and
// line: Prometheus's own errors name neither (`unknown unit "sec"`, a
// relabelling's regexp), and the list may be long.
func badRemoteWrite(root *yaml.Node) error {
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		root = root.Content[0]
	}
	if root.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(root.Content); i += 2 {
		key := root.Content[i].Value
		if (key != "remote_write" && key != "remote_read") || root.Content[i+1].Kind != yaml.SequenceNode {
			continue
		}
		for j, n := range root.Content[i+1].Content {
			// Decoded in place, so merge keys find their anchors (unknown
			// fields are the whole decoder's to report, with their lines).
			var err error
			if key == "remote_write" {
				err = n.Decode(&promconfig.RemoteWriteConfig{})
			} else {
				err = n.Decode(&promconfig.RemoteReadConfig{})
			}
			if err != nil {
				return fmt.Errorf("%s[%d] (line %d): %w", key, j, n.Line, err)
			}
		}
	}
	return nil
}

// hideURLPassword masks the user information of a URL that did not parse
// (a remote write's url or proxy_url) in err's text: net/url's error quotes
// the URL whole, password included, and this error is what `omen check
// config` prints and a failed start or reload logs. Prometheus's own
// config.URL.Redacted cannot help, the URL having no parsed form; the
// text up to the last "@" (net/url's userinfo end) goes, after "://" if
// there is one. An error without such a URL is returned as it is.
func hideURLPassword(err error) error {
	var ue *url.Error
	if !errors.As(err, &ue) {
		return err
	}
	at := strings.LastIndex(ue.URL, "@")
	if at < 0 {
		return err
	}
	start := 0
	if i := strings.Index(ue.URL[:at], "://"); i >= 0 {
		start = i + len("://")
	}
	masked := ue.URL[:start] + "xxxxx" + ue.URL[at:]
	// url.Error quotes the URL with %q: a password with a quote, a
	// backslash or a non-ASCII character is escaped in the text. A new
	// error, not a wrapper: unwrapping would give the password back to
	// whoever prints the cause.
	msg := strings.ReplaceAll(err.Error(), strconv.Quote(ue.URL), strconv.Quote(masked))
	return errors.New(strings.ReplaceAll(msg, ue.URL, masked))
}

// emptyDocument reports whether a decoded YAML document holds nothing: no
// node, or a null.
func emptyDocument(n *yaml.Node) bool {
	if n.Kind == yaml.DocumentNode && len(n.Content) == 1 {
		n = n.Content[0]
	}
	return n.Kind == 0 || (n.Kind == yaml.DocumentNode && len(n.Content) == 0) || (n.Kind == yaml.ScalarNode && n.Tag == "!!null")
}

// Load parses and validates a configuration. Unknown fields are errors, so a
// typo is reported instead of silently ignored.
func Load(b []byte) (*Config, error) {
	c := &Config{}
	var root yaml.Node
	rootErr := yaml.Unmarshal(b, &root)
	dec := yaml.NewDecoder(strings.NewReader(string(b)))
	dec.KnownFields(true)
	if err := dec.Decode(c); err != nil && !errors.Is(err, io.EOF) {
		if rootErr == nil {
			if bad := badDuration(&root, ""); bad != nil {
				return nil, fmt.Errorf("parse: %w", bad)
			}
			var located *yaml.TypeError // the decoder's own name their lines
			if bad := badRemoteWrite(&root); bad != nil && !errors.As(err, &located) {
				return nil, hideURLPassword(fmt.Errorf("parse: %w", bad))
			}
		}
		return nil, hideURLPassword(fmt.Errorf("parse: %w", err))
	}
	// A second document ("---") was ignored, settings and typos alike; an
	// empty one (a trailing ---) holds nothing to lose.
	for {
		var more yaml.Node
		err := dec.Decode(&more)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil || !emptyDocument(&more) {
			return nil, errors.New("parse: more than one YAML document (a line of ---); the configuration is one")
		}
	}
	if rootErr == nil {
		c.markSet(&root)
	}
	if err := c.validate(); err != nil {
		if rootErr == nil {
			err = located(&root, err)
		}
		return nil, err
	}
	return c, nil
}

// located prefixes err, a validation error that starts with the path of
// the field at fault (`derived[12].expr: ...`), with that field's line in
// the document at root, as the decoder's own errors and badDuration's
// are: with a long list of derived inputs, the user counted entries to
// find the twelfth.
func located(root *yaml.Node, err error) error {
	msg := err.Error()
	end := strings.IndexAny(msg, " :")
	if end <= 0 {
		return err
	}
	// A field left out has no line of its own: its entry's is given
	// (derived[3].members[1].expr missing: the member's).
	for path := msg[:end]; path != ""; {
		if n := nodeAt(root, path); n != nil {
			return fmt.Errorf("line %d: %w", n.Line, err)
		}
		i := strings.LastIndexByte(path, '.')
		if i < 0 {
			break
		}
		path = path[:i]
	}
	return err
}

// nodeAt returns the node at path (`a.b[2].c`) in the document at root, or
// nil when a step is not there as written (one given through a merge key).
func nodeAt(root *yaml.Node, path string) *yaml.Node {
	n := root
	if n.Kind == yaml.DocumentNode && len(n.Content) == 1 {
		n = n.Content[0]
	}
	for part := range strings.SplitSeq(path, ".") {
		key, idx := part, -1
		if i := strings.IndexByte(part, '['); i >= 0 && strings.HasSuffix(part, "]") {
			var err error
			if idx, err = strconv.Atoi(part[i+1 : len(part)-1]); err != nil {
				return nil
			}
			key = part[:i]
		}
		if n = child(n, key); n == nil {
			return nil
		}
		if idx >= 0 {
			if n.Kind != yaml.SequenceNode || idx >= len(n.Content) {
				return nil
			}
			n = n.Content[idx]
		}
	}
	return n
}

// Names are held to the classic character set, as the outputs carry them as
// label values and users write them in PromQL without quoting.
var (
	metricName = regexp.MustCompile(`^[a-zA-Z_:][a-zA-Z0-9_:]*$`)
	labelName  = regexp.MustCompile(`^[a-zA-Z_][a-zA-Z0-9_]*$`)
)

// DefaultFalseAlarmRate is detect.DefaultOptions's (config imports none of
// omen's packages; cmd/omen's tests check the two agree): the setting `omen
// backtest` and the NAB benchmark use, so what is measured is what runs.
const DefaultFalseAlarmRate = 1.5e-3

// MinFalseAlarmRate is detect.MinFalseAlarmRate: below it a detector's
// record windows overflow, and a smaller rate gave more false alarms.
const MinFalseAlarmRate = 1e-9

var defaultHorizons = []model.Duration{
	model.Duration(5 * time.Minute), model.Duration(15 * time.Minute), model.Duration(30 * time.Minute),
}

func (c *Config) validate() error {
	if err := c.Defaults.fill(Scoring{
		Direction: "both", FalseAlarmRate: DefaultFalseAlarmRate, ForecastHorizons: defaultHorizons,
	}, "defaults"); err != nil {
		return err
	}
	var err error
	if c.includeM, err = parseSelectors(c.Include, "include"); err != nil {
		return err
	}
	if c.excludeM, err = parseSelectors(c.Exclude, "exclude"); err != nil {
		return err
	}
	for i := range c.Overrides {
		o := &c.Overrides[i]
		where := fmt.Sprintf("overrides[%d]", i)
		if o.matchers, err = parseSelector(o.Match, where+".match"); err != nil {
			return err
		}
		if err := o.Scoring.fill(c.Defaults, where); err != nil {
			return err
		}
		if err := c.reachable(i); err != nil {
			return fmt.Errorf("%s.match %q: never applies: %w", where, o.Match, err)
		}
	}
	seen := map[string]bool{}
	for i := range c.Derived {
		d := &c.Derived[i]
		where := fmt.Sprintf("derived[%d]", i)
		if !metricName.MatchString(d.Name) {
			return fmt.Errorf("%s.name %q: want a valid metric name", where, d.Name)
		}
		if seen[d.Name] {
			return fmt.Errorf("%s.name %q: used twice", where, d.Name)
		}
		if slices.Contains(OutputFamilies[:], d.Name) || strings.HasPrefix(d.Name, "omen_") {
			// Its series would be named like omen's own outputs and
			// metrics, which the TSDB holds beside the inputs.
			return fmt.Errorf("%s.name %q: the name of one of omen's outputs or metrics; give the input a name of its own", where, d.Name)
		}
		seen[d.Name] = true
		if err := d.validateExprs(where); err != nil {
			return err
		}
		if d.Interval == 0 && !d.set["interval"] {
			d.Interval = model.Duration(30 * time.Second)
		}
		if d.Interval < model.Duration(time.Second) {
			return fmt.Errorf("%s.interval %s: want at least 1s", where, d.Interval)
		}
		if err := d.Scoring.fill(c.Defaults, where); err != nil {
			return err
		}
		if d.IsGroup() {
			if err := d.groupOptions(where); err != nil {
				return err
			}
			// A group has no forecasts: none inherited, so the status
			// page and the rules do not show it some.
			d.ForecastHorizons = nil
		}
	}
	if err := validateRemoteRead(c.RemoteRead); err != nil {
		return err
	}
	if err := validateRemoteWrite(c.RemoteWrite); err != nil {
		return err
	}
	if err := c.Alerting.validate(); err != nil {
		return err
	}
	for i, a := range c.Alerting.Capacity {
		if d := c.DerivedNamed(a.For); d != nil && d.IsGroup() {
			return fmt.Errorf("alerting.capacity[%d].for %q: a multivariate group, which has no forecasts; alert on one of its members as a derived input of its own", i, a.For)
		}
	}
	return nil
}

// validateExprs checks d's expression, or its group's members and labels.
func (d *Derived) validateExprs(where string) error {
	switch {
	case d.Expr != "" && len(d.Members) > 0:
		return fmt.Errorf("%s: both expr and members; want expr for one input, members for a group", where)
	case d.Expr == "" && len(d.Members) == 0:
		return fmt.Errorf("%s: want expr, or members for a group", where)
	case d.Expr != "" && len(d.By) > 0:
		return fmt.Errorf("%s.by: only for a group (members); aggregate expr by the labels instead", where)
	case d.Expr != "":
		var err error
		d.sig, err = checkExpr(d.Expr, where+".expr")
		return err
	case len(d.Members) < 2 || len(d.Members) > MaxGroupMembers:
		return fmt.Errorf("%s.members: %d; want 2 to %d", where, len(d.Members), MaxGroupMembers)
	}
	seen := map[string]bool{}
	for i, l := range d.By {
		if !model.UTF8Validation.IsValidLabelName(l) || l == model.MetricNameLabel {
			return fmt.Errorf("%s.by[%d]: %q is not a label name to group by", where, i, l)
		}
		if seen[l] {
			return fmt.Errorf("%s.by: %q twice", where, l)
		}
		seen[l] = true
	}
	clear(seen)
	// The signature, as the expressions parse and the labels sort: a
	// reformatted expression computes the same and keeps its models.
	by := slices.Sorted(slices.Values(d.By))
	d.sig = "by " + strings.Join(by, ",")
	for i, m := range d.Members {
		mw := fmt.Sprintf("%s.members[%d]", where, i)
		if !metricName.MatchString(m.Name) {
			return fmt.Errorf("%s.name %q: want a valid metric name", mw, m.Name)
		}
		if seen[m.Name] {
			return fmt.Errorf("%s.name %q: used twice", mw, m.Name)
		}
		seen[m.Name] = true
		canon, err := checkExpr(m.Expr, mw+".expr")
		if err != nil {
			return err
		}
		d.sig += "\x00" + m.Name + "\x00" + canon
	}
	return nil
}

// checkExpr checks that expr parses to an instant vector or a scalar, and
// returns it as it parsed, formatted.
func checkExpr(expr, where string) (string, error) {
	if strings.TrimSpace(expr) == "" {
		// The parser's own error, "unknown position: parse error: no
		// expression found in input", did not say the field was left out.
		return "", fmt.Errorf("%s: missing; want a PromQL expression", where)
	}
	e, err := parser.NewParser(parser.Options{}).ParseExpr(expr)
	if err != nil {
		return "", fmt.Errorf("%s: %w", where, err)
	}
	if t := e.Type(); t != parser.ValueTypeVector && t != parser.ValueTypeScalar {
		return "", fmt.Errorf("%s: a %s; want an instant vector or a scalar", where, parser.DocumentedType(t))
	}
	// A live evaluation at t sees data up to t only; the warm start's range
	// query over the past would not: `@ end()` gives every past step the
	// latest value, a negative offset each step its future. Either would
	// train the models on what no live evaluation sees.
	var bad error
	parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
		var (
			ts  *int64
			se  parser.ItemType
			off time.Duration
		)
		switch x := n.(type) {
		case *parser.VectorSelector:
			ts, se, off = x.Timestamp, x.StartOrEnd, x.OriginalOffset
		case *parser.SubqueryExpr:
			ts, se, off = x.Timestamp, x.StartOrEnd, x.OriginalOffset
		default:
			return nil
		}
		switch {
		case bad != nil:
		case ts != nil || se != 0:
			bad = fmt.Errorf("%s: @ pins %s to one time; a derived input is evaluated at each time it scores", where, n)
		case off < 0:
			bad = fmt.Errorf("%s: offset -%s reads after the time evaluated (the future, in the warm start's history); want an offset of 0 or more", where, model.Duration(-off).String())
		}
		return nil
	})
	if bad != nil {
		return "", bad
	}
	return e.String(), nil
}

// notForGroups are the scoring options a group does not use: it scores
// its members' joint deviation, with no value of its own to forecast, to
// hold flat, or to measure a deviation of in some unit. Inherited from the
// defaults they are left alone; given in a group's entry they were
// accepted and did nothing (a min_deviation_abs meant to quiet the group).
var notForGroups = [...]string{"min_deviation_abs", "min_deviation_rel", "forecast_horizons", "flatline"}

// groupOptions refuses the options the group d gives that it does not use.
func (d *Derived) groupOptions(where string) error {
	for _, k := range notForGroups {
		if d.set[k] {
			return fmt.Errorf("%s.%s: not for a group (members), which scores its members' joint deviation and has no value of its own; only direction and false_alarm_rate apply. Set it on a derived input of the member's own", where, k)
		}
	}
	return nil
}

// IsGroup reports whether d is a multivariate group.
func (d *Derived) IsGroup() bool { return len(d.Members) > 0 }

// validateRemoteWrite checks what Prometheus checks of its remote_write
// beyond each entry's own parsing.
func validateRemoteWrite(rws []*promconfig.RemoteWriteConfig) error {
	names := map[string]bool{}
	for i, rw := range rws {
		where := fmt.Sprintf("remote_write[%d]", i)
		if rw == nil {
			return fmt.Errorf("%s: empty", where)
		}
		if rw.Name != "" && names[rw.Name] {
			return fmt.Errorf("%s.name %q: used twice", where, rw.Name)
		}
		names[rw.Name] = true
		if err := rw.Validate(model.UTF8Validation); err != nil {
			return fmt.Errorf("%s: %w", where, err)
		}
		if err := httpURL(rw.URL); err != nil {
			return fmt.Errorf("%s.url %w", where, err)
		}
	}
	return nil
}

// httpURL refuses a remote write's or read's URL that is not an absolute
// http(s) URL, as --remote-write.url does (forward.URLConfig). Prometheus
// takes `ftp://h/w` or `/api/v1/write` and its queue fails every send
// ("unsupported protocol scheme"), a line a minute after the reload that
// reported success. The URL is shown without its password.
func httpURL(u *config_util.URL) error {
	switch {
	case u == nil || u.URL == nil:
		return errors.New("empty: want an absolute http(s) URL")
	case (u.Scheme != "http" && u.Scheme != "https") || u.Host == "":
		return fmt.Errorf("%q: want an absolute http(s) URL", u.Redacted())
	}
	return nil
}

// validateRemoteRead refuses what omen's warm start cannot do as the
// remote_read section says: a second upstream, or required_matchers,
// which in Prometheus keep queries without them from going upstream,
// while omen reads every new series' history (a block copied from
// Prometheus with them would read otherwise than it says). read_recent
// and filter_external_labels are taken and do nothing: omen reads the
// history before its own, and --backfill.external-label says how the
// upstream's external labels are matched.
func validateRemoteRead(rrs []*promconfig.RemoteReadConfig) error {
	if len(rrs) > 1 {
		return fmt.Errorf("remote_read[1]: one upstream at most; omen warms new series from one (%d given)", len(rrs))
	}
	for i, rr := range rrs {
		where := fmt.Sprintf("remote_read[%d]", i)
		switch {
		case rr == nil:
			return fmt.Errorf("%s: empty", where)
		case len(rr.RequiredMatchers) > 0:
			return fmt.Errorf("%s.required_matchers: not for omen, which reads every new series' history from the upstream; select the series scored with include/exclude", where)
		}
		if err := httpURL(rr.URL); err != nil {
			return fmt.Errorf("%s.url %w", where, err)
		}
	}
	return nil
}

// fill sets the fields the file does not give (and that are zero) from def
// and checks the result.
func (s *Scoring) fill(def Scoring, where string) error {
	inherit := func(key string) bool { return !s.set[key] }
	if s.Direction == "" && inherit("direction") {
		s.Direction = def.Direction
	}
	if s.FalseAlarmRate == 0 && inherit("false_alarm_rate") {
		s.FalseAlarmRate = def.FalseAlarmRate
	}
	if s.MinDeviationAbs == 0 && inherit("min_deviation_abs") {
		s.MinDeviationAbs = def.MinDeviationAbs
	}
	if s.MinDeviationRel == 0 && inherit("min_deviation_rel") {
		s.MinDeviationRel = def.MinDeviationRel
	}
	if len(s.ForecastHorizons) == 0 && inherit("forecast_horizons") {
		s.ForecastHorizons = def.ForecastHorizons
	}
	if !s.Flatline && inherit("flatline") {
		s.Flatline = def.Flatline
	}
	switch s.Direction {
	case "both", "up", "down":
	default:
		return fmt.Errorf("%s.direction %q: want both, up or down", where, s.Direction)
	}
	// Written so that NaN fails them: it passed "<= 0 || >= 0.5" and then
	// every detector refused it, which stopped all scoring after a reload.
	if !(s.FalseAlarmRate >= MinFalseAlarmRate && s.FalseAlarmRate < 0.5) {
		return fmt.Errorf("%s.false_alarm_rate %g: want a value in [%g, 0.5)", where, s.FalseAlarmRate, MinFalseAlarmRate)
	}
	if !(s.MinDeviationAbs >= 0 && s.MinDeviationRel >= 0) || math.IsInf(s.MinDeviationAbs, 1) || math.IsInf(s.MinDeviationRel, 1) {
		return fmt.Errorf("%s: min_deviation_abs %g and min_deviation_rel %g: want finite values, not negative", where, s.MinDeviationAbs, s.MinDeviationRel)
	}
	if len(s.ForecastHorizons) > MaxForecastHorizons {
		return fmt.Errorf("%s.forecast_horizons: %d horizons, at most %d", where, len(s.ForecastHorizons), MaxForecastHorizons)
	}
	for i, h := range s.ForecastHorizons {
		if h <= 0 {
			return fmt.Errorf("%s.forecast_horizons: %s is not positive", where, h)
		}
		if slices.Contains(s.ForecastHorizons[:i], h) {
			return fmt.Errorf("%s.forecast_horizons: %s twice", where, h)
		}
	}
	// A set, whatever the order written: the scorers compare a reload's
	// horizons with a forecaster's as a list (and a snapshot's calibrated
	// floors are by position), so [30m, 5m, 15m] started every series of
	// the selection again from history. Sorted into a copy: the list may
	// be the defaults' or the package's, shared.
	if !slices.IsSorted(s.ForecastHorizons) {
		s.ForecastHorizons = slices.Sorted(slices.Values(s.ForecastHorizons))
	}
	return nil
}

func (a *Alerting) validate() error {
	if err := a.Warning.fill(1, 5*time.Minute, "alerting.warning"); err != nil {
		return err
	}
	if err := a.Critical.fill(2, 5*time.Minute, "alerting.critical"); err != nil {
		return err
	}
	if a.KeepFiringFor == nil {
		d := model.Duration(2 * time.Minute)
		a.KeepFiringFor = &d
	}
	if a.Critical.Score < a.Warning.Score {
		return fmt.Errorf("alerting: critical.score %g is below warning.score %g", a.Critical.Score, a.Warning.Score)
	}
	if err := runbookTemplate(a.RunbookURL); err != nil {
		return fmt.Errorf("alerting.runbook_url %q: %w", a.RunbookURL, err)
	}
	switch {
	case len(a.GroupBy) == 0 && a.set["group_by"]:
		// Taken for the default: pages by namespace and job where the
		// file asked for none (one page for everything, say).
		return errors.New("alerting.group_by: empty; want the labels the anomaly pages aggregate on (default namespace, job)")
	case len(a.GroupBy) == 0:
		a.GroupBy = []string{"namespace", "job"}
	}
	for i, l := range a.GroupBy {
		if !labelName.MatchString(l) {
			return fmt.Errorf("alerting.group_by: %q is not a valid label name", l)
		}
		if slices.Contains(a.GroupBy[:i], l) {
			return fmt.Errorf("alerting.group_by: %q twice", l)
		}
	}
	for i := range a.Capacity {
		c := &a.Capacity[i]
		where := fmt.Sprintf("alerting.capacity[%d]", i)
		if c.Name == "" || c.For == "" {
			return fmt.Errorf("%s: name and for are required", where)
		}
		// Checked here, not only by `omen rules generate`, so that serve
		// and a reload refuse what the rules could not be made from.
		if !labelName.MatchString(c.Name) {
			return fmt.Errorf("%s.name %q: want a name of letters, digits and underscores", where, c.Name)
		}
		// Two rules of one name on one input write the same ALERTS
		// series (promtool's rule tests fail on a "duplicate sample for
		// timestamp"), and each one's resolve margin reads the other's.
		// On two inputs their series differ by `for`, as Prometheus's own
		// rules may share a name: one alert for several inputs.
		if slices.ContainsFunc(a.Capacity[:i], func(o Capacity) bool { return o.Name == c.Name && o.For == c.For }) {
			return fmt.Errorf("%s.name %q: used twice for %q; give each capacity alert of one input a name of its own", where, c.Name, c.For)
		}
		if c.Match != "" {
			if _, err := parseSelector(c.Match, where+".match"); err != nil {
				return err
			}
		}
		switch {
		case c.Horizon == 0 && c.set["horizon"]:
			// Taken for the default 30m: an alert on forecasts up to
			// 30 minutes ahead where the file asked for none.
			return fmt.Errorf("%s.horizon 0s: want a positive duration, the forecasts up to it alerted on (default 30m)", where)
		case c.Horizon == 0:
			c.Horizon = model.Duration(30 * time.Minute)
		}
		if c.ResolveMargin == "" {
			c.ResolveMargin = DefaultResolveMargin
		}
		if _, _, err := parseMargin(c.ResolveMargin); err != nil {
			return fmt.Errorf("%s.resolve_margin %q: %w", where, c.ResolveMargin, err)
		}
		if err := c.validateLimit(where); err != nil {
			return err
		}
	}
	return nil
}

// validateLimit checks the capacity's direction and its limit, a constant
// or a series.
func (c *Capacity) validateLimit(where string) error {
	switch c.Direction {
	case "":
		c.Direction = CapacityUp
	case CapacityUp, CapacityDown:
	default:
		return fmt.Errorf("%s.direction %q: want up (forecast_upper rising to the limit) or down (forecast_lower falling to it)", where, c.Direction)
	}
	// From a file, what it gives; built in Go, a limit other than 0 or no
	// limit_expr.
	hasLimit, hasExpr := c.set["limit"], c.set["limit_expr"]
	if c.set == nil {
		hasLimit, hasExpr = c.Limit != 0 || c.LimitExpr == "", c.LimitExpr != ""
	}
	switch {
	case hasLimit && hasExpr:
		return fmt.Errorf("%s: both limit and limit_expr; want one", where)
	case !hasLimit && !hasExpr:
		// A missing limit would be 0: an alert on any positive forecast.
		return fmt.Errorf("%s: limit or limit_expr is required", where)
	case hasLimit && len(c.On) > 0:
		return fmt.Errorf("%s.on: only with limit_expr, to match its series with the forecasts", where)
	case hasLimit:
		if math.IsNaN(c.Limit) || math.IsInf(c.Limit, 0) {
			return fmt.Errorf("%s.limit %g: want a finite number", where, c.Limit)
		}
		return nil
	}
	if strings.TrimSpace(c.LimitExpr) == "" {
		return fmt.Errorf("%s.limit_expr: missing; want a PromQL expression", where)
	}
	e, err := parser.NewParser(parser.Options{}).ParseExpr(c.LimitExpr)
	if err != nil {
		return fmt.Errorf("%s.limit_expr: %w", where, err)
	}
	switch t := e.Type(); t {
	case parser.ValueTypeVector:
	case parser.ValueTypeScalar:
		return fmt.Errorf("%s.limit_expr: a scalar; want an instant vector (a constant is limit)", where)
	default:
		return fmt.Errorf("%s.limit_expr: a %s; want an instant vector", where, parser.DocumentedType(t))
	}
	for i, l := range c.On {
		switch {
		case !labelName.MatchString(l):
			return fmt.Errorf("%s.on[%d] %q: not a label name", where, i, l)
		case l == model.MetricNameLabel:
			return fmt.Errorf("%s.on[%d] %q: the limit's name is not the forecasts'; match on the labels they share", where, i, l)
		case l == "for" || l == "horizon":
			return fmt.Errorf("%s.on[%d] %q: a label of the forecasts only (omen's), not of the input nor of its limit", where, i, l)
		case slices.Contains(c.On[:i], l):
			return fmt.Errorf("%s.on: %q twice", where, l)
		}
	}
	return nil
}

// fill sets the tier's fields the file does not give, and checks them: an
// explicit for of 0s stays (an alert that fires at once), a score must be
// positive (anomaly_score > 0 fires on every series).
func (t *Tier) fill(score float64, hold time.Duration, where string) error {
	if t.Score == 0 && !t.set["score"] {
		t.Score = score
	}
	if t.For == 0 && !t.set["for"] {
		t.For = model.Duration(hold)
	}
	if !(t.Score > 0) || math.IsInf(t.Score, 1) {
		return fmt.Errorf("%s.score %g: want a positive number", where, t.Score)
	}
	// A negative for never gets here: the duration's decoding refuses it.
	return nil
}

// markSet records, from the file's YAML tree, which fields of the scoring
// sections, alert tiers and capacity alerts it gives.
func (c *Config) markSet(root *yaml.Node) {
	top := root
	if top.Kind == yaml.DocumentNode && len(top.Content) == 1 {
		top = top.Content[0]
	}
	c.Defaults.set = keysOf(child(top, "defaults"))
	for i, n := range items(child(top, "overrides")) {
		if i < len(c.Overrides) {
			c.Overrides[i].set = keysOf(n)
		}
	}
	for i, n := range items(child(top, "derived")) {
		if i < len(c.Derived) {
			c.Derived[i].set = keysOf(n)
		}
	}
	al := child(top, "alerting")
	c.Alerting.set = keysOf(al)
	// `group_by:` and `horizon:` with no value (a template's unset one)
	// are left out, as they loaded before an explicit [] and 0s were
	// refused: the defaults, not an empty list or 0s the file does not say.
	unsetNull(c.Alerting.set, al, "group_by")
	c.Alerting.Warning.set = keysOf(child(al, "warning"))
	c.Alerting.Critical.set = keysOf(child(al, "critical"))
	for i, n := range items(child(al, "capacity")) {
		if i < len(c.Alerting.Capacity) {
			c.Alerting.Capacity[i].set = keysOf(n)
			unsetNull(c.Alerting.Capacity[i].set, n, "horizon")
		}
	}
}

// unsetNull removes key from set if the mapping n gives it a null.
func unsetNull(set map[string]bool, n *yaml.Node, key string) {
	if v := child(n, key); v != nil && v.Kind == yaml.ScalarNode && v.Tag == "!!null" {
		delete(set, key)
	}
}

// child returns the value of key in the mapping n, or nil.
func child(n *yaml.Node, key string) *yaml.Node {
	if n == nil || n.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return n.Content[i+1]
		}
	}
	return nil
}

// items returns the elements of the sequence n.
func items(n *yaml.Node) []*yaml.Node {
	if n == nil || n.Kind != yaml.SequenceNode {
		return nil
	}
	return n.Content
}

// keysOf returns the keys of the mapping n (an empty set for anything
// else: a section the file leaves out gives no field).
func keysOf(n *yaml.Node) map[string]bool {
	m := map[string]bool{}
	addKeys(m, n, 0)
	return m
}

// addKeys adds the keys of the mapping n to m, with those it takes in by
// merge keys (`<<: *anchor`, or a list of them): a field given through one
// is as given as one written out (an explicit `forecast_horizons: []`
// inherited the defaults' horizons).
func addKeys(m map[string]bool, n *yaml.Node, depth int) {
	for n != nil && n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	if n == nil || depth > 16 {
		return
	}
	switch n.Kind {
	case yaml.SequenceNode: // << takes a list of mappings
		for _, c := range n.Content {
			addKeys(m, c, depth+1)
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := n.Content[i]
			if k.Tag == "!!merge" || (k.Value == "<<" && k.Style == 0) {
				addKeys(m, n.Content[i+1], depth+1)
				continue
			}
			m[k.Value] = true
		}
	}
}

func parseSelectors(sels []string, where string) ([][]*labels.Matcher, error) {
	out := make([][]*labels.Matcher, 0, len(sels))
	for i, s := range sels {
		m, err := parseSelector(s, fmt.Sprintf("%s[%d]", where, i))
		if err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	return out, nil
}

func parseSelector(s, where string) ([]*labels.Matcher, error) {
	if strings.TrimSpace(s) == "" {
		return nil, fmt.Errorf("%s: missing; want a series selector such as '{job=\"api\"}'", where)
	}
	m, err := parser.NewParser(parser.Options{}).ParseMetricSelector(s)
	if err != nil {
		return nil, fmt.Errorf("%s %q: %w", where, s, err)
	}
	return m, nil
}

// Selected reports whether the series with labels ls is scored.
func (c *Config) Selected(ls labels.Labels) bool {
	if len(c.includeM) > 0 && !matchAny(c.includeM, ls) {
		return false
	}
	return !matchAny(c.excludeM, ls)
}

// DerivedNamed returns the derived input called name, or nil.
func (c *Config) DerivedNamed(name string) *Derived {
	for i := range c.Derived {
		if c.Derived[i].Name == name {
			return &c.Derived[i]
		}
	}
	return nil
}

// ScoringFor returns the options for the series with labels ls.
func (c *Config) ScoringFor(ls labels.Labels) Scoring {
	for _, o := range c.Overrides {
		if matches(o.matchers, ls) {
			return o.Scoring
		}
	}
	return c.Defaults
}

// reachable refuses overrides[j] when an earlier override's matchers are
// all among its own: that one selects every series overrides[j] does, and
// the first match wins. Matchers are compared as written (after parsing:
// `up{job="a"}` is `{__name__="up",job="a"}`), not by what their regular
// expressions accept: a dead override that only a regular expression makes
// dead still loads. A matcher written twice counts once.
func (c *Config) reachable(j int) error {
	own := matcherSet(c.Overrides[j].matchers)
	for i, o := range c.Overrides[:j] {
		if !slices.ContainsFunc(o.matchers, func(m *labels.Matcher) bool { return !own[m.String()] }) {
			if len(matcherSet(o.matchers)) == len(own) {
				return fmt.Errorf("overrides[%d] (%q) selects the same series, and the first match wins; remove one", i, o.Match)
			}
			return fmt.Errorf("overrides[%d] (%q) selects every series it does, and the first match wins; put it before overrides[%d]", i, o.Match, i)
		}
	}
	return nil
}

// matcherSet is the set of the matchers ms, as written (after parsing).
func matcherSet(ms []*labels.Matcher) map[string]bool {
	set := make(map[string]bool, len(ms))
	for _, m := range ms {
		set[m.String()] = true
	}
	return set
}

func matchAny(sels [][]*labels.Matcher, ls labels.Labels) bool {
	for _, ms := range sels {
		if matches(ms, ls) {
			return true
		}
	}
	return false
}

func matches(ms []*labels.Matcher, ls labels.Labels) bool {
	for _, m := range ms {
		if !m.Matches(ls.Get(m.Name)) {
			return false
		}
	}
	return true
}

// runbookTemplate checks a runbook URL as Prometheus checks the annotation
// it becomes (the URL and an alert's name, a template with $labels,
// $value and the rest defined): one that does not parse loaded, and then
// every rule file omen generates was refused (`{{ $sabels.job }}`).
func runbookTemplate(base string) error {
	if !strings.Contains(base, "{{") {
		return nil
	}
	defs := "{{$labels := .Labels}}{{$externalLabels := .ExternalLabels}}{{$externalURL := .ExternalURL}}{{$value := .Value}}"
	data := template.AlertTemplateData(map[string]string{}, map[string]string{}, "", promql.Sample{})
	return template.NewTemplateExpander(context.Background(), defs+base+"OmenDown", "runbook_url", data,
		model.Time(0), nil, nil, nil).ParseTest()
}
