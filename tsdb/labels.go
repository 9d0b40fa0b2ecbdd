package tsdb

import (
	"fmt"
	"unicode/utf8"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
)

// LabelLimits bound one series' labels; zero fields are unlimited.
type LabelLimits struct {
	MaxLabels      int
	MaxNameLength  int
	MaxValueLength int
}

// labelChecker validates one series' label pairs in the order the sender
// wrote them, before they are sorted into labels.Labels. The remote-write
// specs require names sorted, unique, and a __name__. Unsorted names are
// taken, as Prometheus's and VictoriaMetrics's receivers take them (both
// sort): vmagent appends a target's labels after the scraped ones, and a
// 400 makes it drop the whole block. A duplicate is found next to its twin
// in sorted input, and after sorting (labels) in unsorted input.
type labelChecker struct {
	limits  LabelLimits
	prev    string
	n       int
	hasName bool
	// empty: some label has an empty value. Prometheus treats such a
	// label as absent and its head drops it (labels.WithoutEmpty), so the
	// series is stored without it, as Prometheus's receiver does, not
	// refused.
	empty bool
	// unsorted: some name came after a greater one. The series is stored
	// sorted; its raw labels are not its stored ones (see empty).
	unsorted bool
	err      error
}

func (c *labelChecker) reset() { *c = labelChecker{limits: c.limits} }

func (c *labelChecker) add(name, value string) {
	if c.err != nil {
		return
	}
	switch {
	case name == "":
		c.err = fmt.Errorf("empty label name (value %q)", value)
	case !utf8.ValidString(name) || !model.UTF8Validation.IsValidLabelName(name):
		c.err = fmt.Errorf("invalid label name %q", name)
	case !utf8.ValidString(value):
		c.err = fmt.Errorf("label %q has a value that is not valid UTF-8", name)
	case c.limits.MaxLabels > 0 && c.n >= c.limits.MaxLabels:
		c.err = fmt.Errorf("series has more than %d labels", c.limits.MaxLabels)
	case c.limits.MaxNameLength > 0 && len(name) > c.limits.MaxNameLength:
		c.err = fmt.Errorf("label name %.40q... is longer than %d bytes", name, c.limits.MaxNameLength)
	case c.limits.MaxValueLength > 0 && len(value) > c.limits.MaxValueLength:
		c.err = fmt.Errorf("label %q has a value longer than %d bytes", name, c.limits.MaxValueLength)
	case c.n > 0 && name == c.prev:
		c.err = fmt.Errorf("duplicate label name %q", name)
	case c.n > 0 && name < c.prev:
		c.unsorted = true
	}
	if value == "" {
		c.empty = true
	} else if name == model.MetricNameLabel {
		c.hasName = true
	}
	c.prev = name
	c.n++
}

// labels returns ls, the series' labels sorted, without those with an
// empty value if it had any; for unsorted input, an error if a name comes
// twice (add saw only neighbours).
func (c *labelChecker) labels(ls labels.Labels) (labels.Labels, error) {
	if c.unsorted {
		if name, dup := ls.HasDuplicateLabelNames(); dup {
			return ls, fmt.Errorf("duplicate label name %q", name)
		}
	}
	if c.empty {
		return ls.WithoutEmpty(), nil
	}
	return ls, nil
}

// raw reports whether the series' labels as sent are its stored ones, in
// order: what a ref-cache entry keyed by the raw labels needs.
func (c *labelChecker) raw() bool { return !c.empty && !c.unsorted }

func (c *labelChecker) check() error {
	if c.err != nil {
		return c.err
	}
	if !c.hasName {
		return fmt.Errorf("series has no %s label", model.MetricNameLabel)
	}
	return nil
}
