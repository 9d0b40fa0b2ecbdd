package main

import (
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/alecthomas/kingpin/v2"
	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/require"

	"github.com/omen-sidecar/omen/pipeline"
)

// kingpinServeFlags returns omen serve's flags (the application's own, the log
// flags, included) by name, as kingpin registers them.
func kingpinServeFlags(t *testing.T) map[string]*kingpin.FlagModel {
	t.Helper()
	app := kingpin.New("omen", "")
	registerServe(app, registerLogFlags(app))
	flags := map[string]*kingpin.FlagModel{}
	for _, f := range append(app.Model().Flags, app.GetCommand("serve").Model().Flags...) {
		flags[f.Name] = f
	}
	return flags
}

// docDefault says whether a default as the documentation writes it is the
// flag's: durations in either spelling ("1m", "1m0s"), "off" for a false
// boolean, "none", "learnt" or nothing for no default, "all" for every
// output family.
func docDefault(doc string, f *kingpin.FlagModel) bool {
	got := strings.Join(f.Default, ",")
	switch doc {
	case "off":
		return f.IsBoolFlag() && (got == "" || got == "false")
	case "on":
		return f.IsBoolFlag() && got == "true"
	case "", "none", "learnt":
		return got == ""
	case "all":
		return got == strings.Join(pipeline.AllFamilies, ",")
	}
	if doc == got {
		return true
	}
	d, err1 := model.ParseDuration(doc)
	g, err2 := model.ParseDuration(strings.TrimSuffix(strings.TrimSuffix(got, "0s"), "0m"))
	return err1 == nil && err2 == nil && d == g
}

// section returns the text of a Markdown file from the heading to the next
// heading of its level or above.
func section(t *testing.T, path, heading string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	text := string(b)
	i := strings.Index(text, "\n"+heading+"\n")
	require.GreaterOrEqual(t, i, 0, "%s has no %q", path, heading)
	text = text[i+len(heading)+2:]
	level := strings.Repeat("#", strings.Index(heading, " "))
	for _, h := range regexp.MustCompile(`(?m)^#+ `).FindAllStringIndex(text, -1) {
		if h[1]-h[0]-1 <= len(level) {
			return text[:h[0]]
		}
	}
	return text
}

var (
	docFlagRE = regexp.MustCompile("`--([a-z0-9.-]+)`")
	cellRE    = regexp.MustCompile("^`([^`]*)`")
)

// TestReadmeFlagsTable checks the README's Flags table against kingpin:
// every flag it names exists with the default it gives, and every flag of
// omen serve is in it (docs/reference.md's "Flags in detail" says the table
// lists them all), so that a new flag, a renamed one or a changed default
// cannot leave the table behind.
func TestReadmeFlagsTable(t *testing.T) {
	flags := kingpinServeFlags(t)
	listed := map[string]bool{}
	for _, line := range strings.Split(section(t, "../../README.md", "## Flags"), "\n") {
		if !strings.HasPrefix(line, "| `--") {
			continue
		}
		// | flags | defaults | meaning |: the first two cells hold no '|'.
		cells := strings.Split(line, "|")
		require.GreaterOrEqual(t, len(cells), 4, line)
		var names []string
		for _, m := range docFlagRE.FindAllStringSubmatch(cells[1], -1) {
			names = append(names, m[1])
		}
		// Defaults, one per flag in the same order, comma separated:
		// `value` or a word, a note in parentheses after it.
		var defaults []string
		for _, d := range strings.Split(cells[2], ", ") {
			d = strings.TrimSpace(d)
			if m := cellRE.FindStringSubmatch(d); m != nil {
				d = m[1]
			} else if i := strings.Index(d, " ("); i >= 0 {
				d = d[:i]
			}
			defaults = append(defaults, d)
		}
		if len(defaults) == 1 && len(names) > 1 {
			for len(defaults) < len(names) {
				defaults = append(defaults, defaults[0])
			}
		}
		require.Len(t, defaults, len(names), "README's Flags row %q: one default per flag", line)
		for i, name := range names {
			f, ok := flags[name]
			require.True(t, ok, "README's Flags table names --%s, which omen serve does not have", name)
			require.True(t, docDefault(defaults[i], f), "README's Flags table gives --%s the default %q; kingpin's is %q", name, defaults[i], f.Default)
			listed[name] = true
		}
	}
	var missing []string
	for name, f := range flags {
		if !f.Hidden && !listed[name] && name != "help" && name != "version" {
			missing = append(missing, name)
		}
	}
	require.Empty(t, missing, "omen serve flags missing from the README's Flags table")
}

// TestReferenceFlagDefaults checks the defaults docs/reference.md's "Flags
// in detail" gives in parentheses after a flag against kingpin's.
func TestReferenceFlagDefaults(t *testing.T) {
	flags := kingpinServeFlags(t)
	text := section(t, "../../docs/reference.md", "## Flags in detail")
	re := regexp.MustCompile("(?m)^- `--([a-z0-9.-]+)` \\((?:default )?`?([^`)]*)`?\\)")
	matches := re.FindAllStringSubmatch(text, -1)
	require.NotEmpty(t, matches)
	for _, m := range matches {
		f, ok := flags[m[1]]
		require.True(t, ok, "docs/reference.md names --%s, which omen serve does not have", m[1])
		require.True(t, docDefault(m[2], f), "docs/reference.md gives --%s the default %q; kingpin's is %q", m[1], m[2], f.Default)
	}
}

// omenApp returns kingpin's application with every omen command registered.
func omenApp() *kingpin.Application {
	app := kingpin.New("omen", "")
	lc := registerLogFlags(app)
	registerServe(app, lc)
	registerBacktest(app, lc)
	registerForecast(app, lc)
	registerRules(app, lc)
	registerCheck(app, lc)
	registerLoadgen(app, lc)
	return app
}

// TestDocumentedFlagsExist checks each flag the README, docs/reference.md,
// docs/deploy.md and the runbooks name (`--name`, anywhere) is a flag of
// some omen command, so a renamed flag cannot leave an instruction that
// omen refuses to start with.
func TestDocumentedFlagsExist(t *testing.T) {
	app := omenApp()
	known := map[string]bool{"help-long": true, "help-man": true}
	var walk func(flags []*kingpin.FlagModel, cmds []*kingpin.CmdModel)
	walk = func(flags []*kingpin.FlagModel, cmds []*kingpin.CmdModel) {
		for _, f := range flags {
			known[f.Name] = true
		}
		for _, c := range cmds {
			walk(c.Flags, c.Commands)
		}
	}
	m := app.Model()
	walk(m.Flags, m.Commands)
	require.True(t, known["storage.tsdb.path"] && known["probe-url"], "the walk reaches serve's and loadgen's flags")

	// Other programs' flags the documents show: docker run's, and the
	// OpenTelemetry Collector's.
	others := map[string]bool{"name": true, "feature-gates": true}
	flag := regexp.MustCompile(`(?:^|[\s\x60(])--([a-z][a-z0-9.-]*[a-z0-9])`)
	for _, doc := range []string{"../../README.md", "../../docs/reference.md", "../../docs/deploy.md", "../../deploy/runbooks.md"} {
		b, err := os.ReadFile(doc)
		require.NoError(t, err)
		for _, f := range flag.FindAllStringSubmatch(string(b), -1) {
			require.True(t, known[f[1]] || others[f[1]], "%s names --%s, which no omen command has", doc, f[1])
		}
	}
}

// TestReferenceOtherCommandsFlags checks docs/reference.md's "Flags of the
// other commands" against kingpin, as TestReadmeFlagsTable does the
// README's for omen serve: each command's table lists every flag it has
// (but the global --log.* ones and hidden ones) with kingpin's default
// ("required" for a required flag), and no flag it lacks.
func TestReferenceOtherCommandsFlags(t *testing.T) {
	app := omenApp()
	global := map[string]bool{}
	for _, f := range app.Model().Flags {
		global[f.Name] = true
	}
	text := section(t, "../../docs/reference.md", "## Flags of the other commands")
	row := regexp.MustCompile("^\\| ([^|]*) \\| ([^|]*) \\|")
	var leaves func(prefix string, cmds []*kingpin.CmdModel)
	n := 0
	leaves = func(prefix string, cmds []*kingpin.CmdModel) {
		for _, c := range cmds {
			name := prefix + c.Name
			if name == "serve" {
				continue // the README's Flags table, TestReadmeFlagsTable
			}
			if len(c.Commands) > 0 {
				leaves(name+" ", c.Commands)
				continue
			}
			n++
			flags := map[string]*kingpin.FlagModel{}
			for _, f := range c.Flags {
				flags[f.Name] = f
			}
			listed := map[string]bool{}
			heading := "\n### `omen " + name + "`\n"
			i := strings.Index(text, heading)
			require.GreaterOrEqual(t, i, 0, "docs/reference.md's \"Flags of the other commands\" has no %q", heading)
			sub := text[i+len(heading):]
			if j := strings.Index(sub, "\n#"); j >= 0 {
				sub = sub[:j]
			}
			for _, line := range strings.Split(sub, "\n") {
				m := row.FindStringSubmatch(line)
				if m == nil || !strings.HasPrefix(m[1], "`--") {
					continue
				}
				var defaults []string
				for _, d := range strings.Split(m[2], ", ") {
					defaults = append(defaults, strings.Trim(strings.TrimSpace(d), "`"))
				}
				names := docFlagRE.FindAllStringSubmatch(m[1], -1)
				for len(defaults) < len(names) {
					defaults = append(defaults, defaults[0])
				}
				require.Len(t, defaults, len(names), "omen %s's row %q: one default per flag", name, line)
				for i, fm := range names {
					f, ok := flags[fm[1]]
					require.True(t, ok, "docs/reference.md lists --%s for omen %s, which has no such flag", fm[1], name)
					if defaults[i] == "required" {
						require.True(t, f.Required, "docs/reference.md says omen %s's --%s is required; it is not", name, fm[1])
					} else {
						require.False(t, f.Required, "omen %s's --%s is required; docs/reference.md gives it the default %q", name, fm[1], defaults[i])
						require.True(t, docDefault(defaults[i], f), "docs/reference.md gives omen %s's --%s the default %q; kingpin's is %q", name, fm[1], defaults[i], f.Default)
					}
					listed[fm[1]] = true
				}
			}
			var missing []string
			for fname, f := range flags {
				if !f.Hidden && !listed[fname] && !global[fname] {
					missing = append(missing, fname)
				}
			}
			require.Empty(t, missing, "omen %s flags missing from docs/reference.md's \"Flags of the other commands\"", name)
		}
	}
	leaves("", app.Model().Commands)
	require.Equal(t, 5, n, "commands checked")
}
