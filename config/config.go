// Package config holds omen's configuration file (--config.file): which
// series are scored and how, derived inputs evaluated with PromQL, and the
// alerting settings that `omen rules generate` turns into Prometheus rules.
//
// The file is YAML. Every field has a default, so an empty file (or none) is
// a valid configuration that scores every series.
package config

import (
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"
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

	includeM, excludeM [][]*labels.Matcher
}

// Scoring holds the per-selection options of the detectors and forecasters.
type Scoring struct {
	// Direction is "both" (default), "up" or "down": which deviations count.
	Direction string `yaml:"direction,omitempty"`
	// FalseAlarmRate is the share of normal samples allowed to score above 1
	// (default 0.001).
	FalseAlarmRate float64 `yaml:"false_alarm_rate,omitempty"`
	// MinDeviationAbs and MinDeviationRel suppress deviations from the
	// expected value smaller than this absolute amount or this fraction of it.
	MinDeviationAbs float64 `yaml:"min_deviation_abs,omitempty"`
	MinDeviationRel float64 `yaml:"min_deviation_rel,omitempty"`
	// ForecastHorizons are the horizons of the forecast series (default 5m,
	// 15m, 30m).
	ForecastHorizons []model.Duration `yaml:"forecast_horizons,omitempty"`
}

// Override applies Scoring to the series Match selects.
type Override struct {
	Match   string `yaml:"match"`
	Scoring `yaml:",inline"`

	matchers []*labels.Matcher
}

// Derived is a named PromQL expression evaluated every Interval. Each series
// of its result is scored as an input whose `for` label is Name.
type Derived struct {
	Name     string         `yaml:"name"`
	Expr     string         `yaml:"expr"`
	Interval model.Duration `yaml:"interval,omitempty"` // default 30s
	Scoring  `yaml:",inline"`
}

// Alerting configures generated alerting rules.
type Alerting struct {
	// Warning and Critical are the severity tiers on anomaly_score.
	Warning  Tier `yaml:"warning,omitempty"`  // default score 1 for 5m
	Critical Tier `yaml:"critical,omitempty"` // default score 3 for 10m
	// GroupBy are the labels anomaly pages aggregate on (default namespace, job).
	GroupBy []string `yaml:"group_by,omitempty"`
	// RunbookURL is the base URL of the runbooks; the alert name is appended,
	// after a "/" unless it ends in one of "/#=?".
	RunbookURL string `yaml:"runbook_url,omitempty"`
	// Capacity lists forecast-based capacity alerts.
	Capacity []Capacity `yaml:"capacity,omitempty"`
}

// Tier is one severity level of the anomaly alerts.
type Tier struct {
	Score float64        `yaml:"score,omitempty"`
	For   model.Duration `yaml:"for,omitempty"`
}

// Capacity alerts when forecast_upper of the input named For crosses Limit
// within Horizon.
type Capacity struct {
	Name    string         `yaml:"name"`
	For     string         `yaml:"for"`             // the input (value of the `for` label)
	Match   string         `yaml:"match,omitempty"` // optional extra series selector on the forecast
	Limit   float64        `yaml:"limit"`
	Horizon model.Duration `yaml:"horizon,omitempty"` // default 30m
}

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
	return c, nil
}

// Load parses and validates a configuration. Unknown fields are errors, so a
// typo is reported instead of silently ignored.
func Load(b []byte) (*Config, error) {
	c := &Config{}
	dec := yaml.NewDecoder(strings.NewReader(string(b)))
	dec.KnownFields(true)
	if err := dec.Decode(c); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("parse: %w", err)
	}
	if err := c.validate(); err != nil {
		return nil, err
	}
	return c, nil
}

// Names are held to the classic character set, as the outputs carry them as
// label values and users write them in PromQL without quoting.
var (
	metricName = regexp.MustCompile(`^[a-zA-Z_:][a-zA-Z0-9_:]*$`)
	labelName  = regexp.MustCompile(`^[a-zA-Z_][a-zA-Z0-9_]*$`)
)

var defaultHorizons = []model.Duration{
	model.Duration(5 * time.Minute), model.Duration(15 * time.Minute), model.Duration(30 * time.Minute),
}

func (c *Config) validate() error {
	if err := c.Defaults.fill(Scoring{
		Direction: "both", FalseAlarmRate: 0.001, ForecastHorizons: defaultHorizons,
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
		seen[d.Name] = true
		if _, err := parser.NewParser(parser.Options{}).ParseExpr(d.Expr); err != nil {
			return fmt.Errorf("%s.expr: %w", where, err)
		}
		if d.Interval == 0 {
			d.Interval = model.Duration(30 * time.Second)
		}
		if d.Interval < model.Duration(time.Second) {
			return fmt.Errorf("%s.interval %s: want at least 1s", where, d.Interval)
		}
		if err := d.Scoring.fill(c.Defaults, where); err != nil {
			return err
		}
	}
	return c.Alerting.validate()
}

// fill sets zero fields from def and checks the result.
func (s *Scoring) fill(def Scoring, where string) error {
	if s.Direction == "" {
		s.Direction = def.Direction
	}
	if s.FalseAlarmRate == 0 {
		s.FalseAlarmRate = def.FalseAlarmRate
	}
	if s.MinDeviationAbs == 0 {
		s.MinDeviationAbs = def.MinDeviationAbs
	}
	if s.MinDeviationRel == 0 {
		s.MinDeviationRel = def.MinDeviationRel
	}
	if len(s.ForecastHorizons) == 0 {
		s.ForecastHorizons = def.ForecastHorizons
	}
	switch s.Direction {
	case "both", "up", "down":
	default:
		return fmt.Errorf("%s.direction %q: want both, up or down", where, s.Direction)
	}
	if s.FalseAlarmRate <= 0 || s.FalseAlarmRate >= 0.5 {
		return fmt.Errorf("%s.false_alarm_rate %g: want a value in (0, 0.5)", where, s.FalseAlarmRate)
	}
	if s.MinDeviationAbs < 0 || s.MinDeviationRel < 0 {
		return fmt.Errorf("%s: min_deviation_abs and min_deviation_rel must not be negative", where)
	}
	for _, h := range s.ForecastHorizons {
		if h <= 0 {
			return fmt.Errorf("%s.forecast_horizons: %s is not positive", where, h)
		}
	}
	return nil
}

func (a *Alerting) validate() error {
	if a.Warning.Score == 0 {
		a.Warning.Score = 1
	}
	if a.Warning.For == 0 {
		a.Warning.For = model.Duration(5 * time.Minute)
	}
	if a.Critical.Score == 0 {
		a.Critical.Score = 3
	}
	if a.Critical.For == 0 {
		a.Critical.For = model.Duration(10 * time.Minute)
	}
	if a.Critical.Score < a.Warning.Score {
		return fmt.Errorf("alerting: critical.score %g is below warning.score %g", a.Critical.Score, a.Warning.Score)
	}
	if len(a.GroupBy) == 0 {
		a.GroupBy = []string{"namespace", "job"}
	}
	for _, l := range a.GroupBy {
		if !labelName.MatchString(l) {
			return fmt.Errorf("alerting.group_by: %q is not a valid label name", l)
		}
	}
	for i := range a.Capacity {
		c := &a.Capacity[i]
		where := fmt.Sprintf("alerting.capacity[%d]", i)
		if c.Name == "" || c.For == "" {
			return fmt.Errorf("%s: name and for are required", where)
		}
		if c.Match != "" {
			if _, err := parseSelector(c.Match, where+".match"); err != nil {
				return err
			}
		}
		if c.Horizon == 0 {
			c.Horizon = model.Duration(30 * time.Minute)
		}
	}
	return nil
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

// ScoringFor returns the options for the series with labels ls.
func (c *Config) ScoringFor(ls labels.Labels) Scoring {
	for _, o := range c.Overrides {
		if matches(o.matchers, ls) {
			return o.Scoring
		}
	}
	return c.Defaults
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
