package deploy

import (
	"debug/elf"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// instruction is one Dockerfile instruction with its continuation lines joined.
type instruction struct {
	cmd, args string
}

func parseDockerfile(t *testing.T, b []byte) []instruction {
	t.Helper()
	var out []instruction
	var cur strings.Builder
	for _, line := range strings.Split(string(b), "\n") {
		trimmed := strings.TrimSpace(line)
		if cur.Len() == 0 && (trimmed == "" || strings.HasPrefix(trimmed, "#")) {
			continue
		}
		if strings.HasSuffix(trimmed, "\\") {
			cur.WriteString(strings.TrimSuffix(trimmed, "\\") + " ")
			continue
		}
		cur.WriteString(trimmed)
		cmd, args, _ := strings.Cut(cur.String(), " ")
		out = append(out, instruction{strings.ToUpper(cmd), strings.TrimSpace(args)})
		cur.Reset()
	}
	return out
}

// buildCommand returns the Dockerfile's go build, with the ARG defaults
// substituted and the output redirected to out.
func buildCommand(t *testing.T, ins []instruction, out string) (string, string) {
	t.Helper()
	args := map[string]string{}
	var run, target string
	for _, in := range ins {
		switch in.cmd {
		case "ARG":
			k, v, _ := strings.Cut(in.args, "=")
			args[k] = v
		case "RUN":
			if strings.Contains(in.args, "go build") {
				require.Empty(t, run, "one go build")
				run = in.args
			}
		}
	}
	require.NotEmpty(t, run, "no go build in the Dockerfile")
	m := regexp.MustCompile(`-o (\S+)`).FindStringSubmatch(run)
	require.NotNil(t, m)
	target = m[1]
	run = strings.Replace(run, "-o "+target, "-o "+out, 1)
	run = os.Expand(run, func(k string) string { return args[k] })
	return run, target
}

// TestDockerfile checks the image is a static binary on a distroless or
// scratch base, runs as a non-root user and serves on 9201 with its data
// where the Kubernetes manifests mount it.
func TestDockerfile(t *testing.T) {
	ins := parseDockerfile(t, read(t, "../Dockerfile"))
	var froms []instruction
	last := 0
	for i, in := range ins {
		if in.cmd == "FROM" {
			froms = append(froms, in)
			last = i
		}
	}
	require.GreaterOrEqual(t, len(froms), 2, "a build stage and a runtime stage")
	final := ins[last:]
	base := strings.Fields(froms[len(froms)-1].args)[0]
	require.Regexp(t, `^(scratch|gcr\.io/distroless/static[^:]*:nonroot)$`, base)

	var user, entry, cmd, expose string
	var copied []string
	for _, in := range final {
		switch in.cmd {
		case "USER":
			user = in.args
		case "ENTRYPOINT":
			entry = in.args
		case "CMD":
			cmd = in.args
		case "EXPOSE":
			expose = in.args
		case "COPY":
			f := strings.Fields(in.args)
			copied = append(copied, f[len(f)-2])
		case "RUN":
			require.Fail(t, "the runtime stage has no shell to RUN in")
		}
	}
	require.Regexp(t, `^[1-9][0-9]*:[1-9][0-9]*$`, user, "numeric non-root user, so runAsNonRoot can verify it")
	require.Equal(t, "9201", expose)
	var ep, args []string
	require.NoError(t, json.Unmarshal([]byte(entry), &ep), "ENTRYPOINT in exec form")
	require.NoError(t, json.Unmarshal([]byte(cmd), &args), "CMD in exec form")
	require.Equal(t, []string{"/omen"}, ep)
	require.Contains(t, args, "--storage.tsdb.path=/data", "the path the StatefulSet mounts its volume at")

	run, target := buildCommand(t, ins, "OUT")
	require.Contains(t, copied, target, "the runtime stage copies the built binary")
	require.Contains(t, run, "CGO_ENABLED=0")
	require.True(t, strings.HasSuffix(run, " ./cmd/omen"), run)
}

// TestDockerfileBuildIsStatic checks, with the go command, that omen and all
// its dependencies build without cgo, which makes the binary static. Set
// OMEN_DOCKER_BUILD=1 to run the Dockerfile's go build itself and inspect
// the ELF file (several minutes on a cold build cache).
func TestDockerfileBuildIsStatic(t *testing.T) {
	goCmd, err := exec.LookPath("go")
	require.NoError(t, err)
	list := exec.Command(goCmd, "list", "-deps", "-e", "-json=ImportPath,Error,DepsErrors", "./cmd/omen")
	list.Dir = ".."
	list.Env = append(os.Environ(), "CGO_ENABLED=0")
	out, err := list.Output()
	require.NoError(t, err)
	dec := json.NewDecoder(strings.NewReader(string(out)))
	n := 0
	for {
		var p struct {
			ImportPath string
			Error      *struct{ Err string }
			DepsErrors []struct{ Err string }
		}
		if err := dec.Decode(&p); errors.Is(err, io.EOF) {
			break
		} else {
			require.NoError(t, err)
		}
		n++
		require.Nil(t, p.Error, "%s does not build without cgo", p.ImportPath)
		require.Empty(t, p.DepsErrors, "%s", p.ImportPath)
		require.NotEqual(t, "runtime/cgo", p.ImportPath)
	}
	require.Greater(t, n, 100)

	if os.Getenv("OMEN_DOCKER_BUILD") != "1" {
		t.Skip("set OMEN_DOCKER_BUILD=1 to run the Dockerfile's go build")
	}
	bin := filepath.Join(t.TempDir(), "omen")
	cmd, _ := buildCommand(t, parseDockerfile(t, read(t, "../Dockerfile")), bin)
	run(t, "..", "sh", "-c", cmd)
	f, err := elf.Open(bin)
	require.NoError(t, err)
	defer f.Close()
	for _, p := range f.Progs {
		require.NotEqual(t, elf.PT_INTERP, p.Type, "dynamically linked")
		require.NotEqual(t, elf.PT_DYNAMIC, p.Type, "dynamically linked")
	}
	// kingpin prints the version on standard error.
	ver, err := exec.Command(bin, "--version").CombinedOutput()
	require.NoError(t, err)
	require.Contains(t, string(ver), "omen, version dev")
}

// TestDockerignore keeps build outputs, data and the repository's history
// out of the build context.
func TestDockerignore(t *testing.T) {
	lines := strings.Split(string(read(t, "../.dockerignore")), "\n")
	for _, want := range []string{".git", "bin", "data", "out"} {
		require.Contains(t, lines, want)
	}
}
