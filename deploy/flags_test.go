package deploy

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/omen-sidecar/omen/internal/omenbin"
	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"
)

// TestManifestArgsAreOmenFlags builds omen and checks every flag the
// StatefulSet, its overlays' patches and the Dockerfile pass to `omen serve`
// is one it has: kingpin refuses unknown flags, so a wrong one is a pod in
// CrashLoopBackOff.
func TestManifestArgsAreOmenFlags(t *testing.T) {
	bin := buildOmen(t)
	help, err := exec.Command(bin, "serve", "--help").CombinedOutput()
	require.NoError(t, err, "%s", help)
	known := map[string]bool{}
	for _, m := range regexp.MustCompile(`--([a-z0-9.-]+)`).FindAllStringSubmatch(string(help), -1) {
		known[m[1]] = true
	}
	require.True(t, known["storage.tsdb.path"], "omen serve --help lists no flags:\n%s", help)

	var args []string
	var sts struct {
		Spec struct {
			Template struct {
				Spec struct {
					Containers []struct {
						Args []string `yaml:"args"`
					} `yaml:"containers"`
				} `yaml:"spec"`
			} `yaml:"template"`
		} `yaml:"spec"`
	}
	require.NoError(t, yaml.Unmarshal(read(t, "kubernetes/base/statefulset.yaml"), &sts))
	args = append(args, sts.Spec.Template.Spec.Containers[0].Args...)
	// Overlays add flags with JSON patches: `value: --flag=...`.
	files, err := filepath.Glob("kubernetes/overlays/*/kustomization.yaml")
	require.NoError(t, err)
	for _, f := range files {
		for _, m := range regexp.MustCompile(`value: (--\S+)`).FindAllStringSubmatch(string(read(t, f)), -1) {
			args = append(args, m[1])
		}
	}
	for _, in := range parseDockerfile(t, read(t, "../Dockerfile")) {
		if in.cmd == "CMD" {
			var cmd []string
			require.NoError(t, json.Unmarshal([]byte(in.args), &cmd))
			args = append(args, cmd...)
		}
	}
	n := 0
	for _, a := range args {
		if !strings.HasPrefix(a, "--") {
			require.Equal(t, "serve", a, "omen's subcommand")
			continue
		}
		name, _, _ := strings.Cut(strings.TrimPrefix(a, "--"), "=")
		require.True(t, known[name], "omen serve has no flag --%s", name)
		n++
	}
	require.GreaterOrEqual(t, n, 8)
}

// omenBuild builds omen once for the package's tests, or takes make
// test's bin/omen ($OMEN_BIN, internal/omenbin).
var omenBuild omenbin.Builder

// buildOmen returns the omen binary the package's tests run.
func buildOmen(t *testing.T) string {
	t.Helper()
	bin, err := omenBuild.Path()
	require.NoError(t, err)
	return bin
}

func TestMain(m *testing.M) {
	code := m.Run()
	omenBuild.Remove()
	os.Exit(code)
}

// TestRulesGenerateCommand runs `omen rules generate` as users do: its
// output is the file the promtool unit tests exercise, and a bad
// configuration is an error, not an empty rule file.
func TestRulesGenerateCommand(t *testing.T) {
	bin := buildOmen(t)
	out := run(t, "..", bin, "rules", "generate", "--config.file", "rules/testdata/omen.yml")
	require.Equal(t, string(read(t, "../rules/testdata/omen.rules.yml")), string(out))
	out = run(t, "..", bin, "rules", "generate")
	require.Equal(t, string(read(t, rulesFile)), string(out), "defaults")

	cmd := exec.Command(bin, "rules", "generate", "--config.file", filepath.Join(t.TempDir(), "missing.yml"))
	msg, err := cmd.CombinedOutput()
	require.Error(t, err)
	require.Contains(t, string(msg), "read config")
	bad := filepath.Join(t.TempDir(), "bad.yml")
	write(t, bad, []byte("alerting: {capacity: [{name: Full, for: disk, limit: 1, horizon: 1m}]}\n"))
	msg, err = exec.Command(bin, "rules", "generate", "--config.file", bad).CombinedOutput()
	require.Error(t, err)
	require.Contains(t, string(msg), "no forecast horizon is within 1m")
}
