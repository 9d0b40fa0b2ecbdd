package config

import (
	"reflect"
	"strings"

	"gopkg.in/yaml.v3"
)

// YAML encodes c as the status API shows it. A field the file set to its
// zero value (an override's `min_deviation_abs: 0` or `forecast_horizons:
// []`, a tier's `for: 0s`) is kept, although omitempty would drop it: it
// overrides a default, and the configuration shown without it reads as
// inheriting that default.
func (c *Config) YAML() ([]byte, error) {
	var top yaml.Node
	if err := top.Encode(c); err != nil {
		return nil, err
	}
	keepSet(&top, "defaults", &c.Defaults, c.Defaults.set)
	for i := range c.Overrides {
		keepSet(item(&top, "overrides", i), "", &c.Overrides[i], c.Overrides[i].set)
	}
	for i := range c.Derived {
		keepSet(item(&top, "derived", i), "", &c.Derived[i], c.Derived[i].set)
	}
	al := &c.Alerting
	if len(al.Warning.set)+len(al.Critical.set) > 0 {
		alerting := section(&top, "alerting")
		keepSet(alerting, "warning", &al.Warning, al.Warning.set)
		keepSet(alerting, "critical", &al.Critical, al.Critical.set)
	}
	for i := range al.Capacity {
		keepSet(item(child(&top, "alerting"), "capacity", i), "", &al.Capacity[i], al.Capacity[i].set)
	}
	return yaml.Marshal(&top)
}

// keepSet adds to the mapping m (its child key, made if missing, unless key
// is empty) each field of the struct *v that set names and m lacks.
func keepSet(m *yaml.Node, key string, v any, set map[string]bool) {
	if m == nil || len(set) == 0 {
		return
	}
	target := m
	if key != "" {
		target = child(m, key) // nil if missing: every set field is added
	}
	var add []*yaml.Node
	eachField(reflect.ValueOf(v).Elem(), func(name string, f reflect.Value) {
		if !set[name] || child(target, name) != nil {
			return
		}
		var val yaml.Node
		if err := val.Encode(f.Interface()); err != nil {
			return
		}
		add = append(add, &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: name}, &val)
	})
	if len(add) == 0 {
		return
	}
	if key != "" {
		m = section(m, key)
	}
	m.Content = append(m.Content, add...)
}

// eachField calls f with the YAML name and value of each exported field of
// the struct v, inline ones' fields included.
func eachField(v reflect.Value, f func(name string, fv reflect.Value)) {
	t := v.Type()
	for i := range t.NumField() {
		sf := t.Field(i)
		if !sf.IsExported() {
			continue
		}
		name, opts, _ := strings.Cut(sf.Tag.Get("yaml"), ",")
		if strings.Contains(opts, "inline") {
			eachField(v.Field(i), f)
			continue
		}
		if name == "" {
			name = strings.ToLower(sf.Name)
		}
		f(name, v.Field(i))
	}
}

// section returns the mapping under key in m, added if m lacks it.
func section(m *yaml.Node, key string) *yaml.Node {
	if n := child(m, key); n != nil {
		return n
	}
	n := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
	m.Content = append(m.Content, &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: key}, n)
	return n
}

// item returns the i-th element of the sequence under key in m, or nil.
func item(m *yaml.Node, key string, i int) *yaml.Node {
	if s := items(child(m, key)); i < len(s) {
		return s[i]
	}
	return nil
}
