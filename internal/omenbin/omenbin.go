// Package omenbin builds the omen binary from this source tree for the
// tests that run it as a process (e2e, web): once per test binary, into a
// temporary directory that Remove deletes (65 MB a build, which piled up
// in the temporary folder when every test that started omen built it).
// $OMEN_BIN, if set, names a binary built already (make test builds
// bin/omen once for both packages), which is used instead and kept.
package omenbin

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
)

// cmdPath is omen's main package.
const cmdPath = "github.com/omen-sidecar/omen/cmd/omen"

// EnvBin is the environment variable naming a binary to use instead of
// building one, built from the same tree: an absolute path, or one
// relative to the test's package directory (go test's working directory).
const EnvBin = "OMEN_BIN"

// Builder builds cmd/omen on the first call of Path. Its zero value is
// ready to use; it is safe for concurrent use.
type Builder struct {
	once  sync.Once
	path  string
	built bool // path is a temporary build, for Remove
	err   error
}

// Path returns the binary, $OMEN_BIN if set, else building it on the first
// call; a failed build's error (or a missing $OMEN_BIN's) is returned to
// every call.
func (b *Builder) Path() (string, error) {
	b.once.Do(func() {
		if bin := os.Getenv(EnvBin); bin != "" {
			abs, err := filepath.Abs(bin)
			if err == nil {
				_, err = os.Stat(abs)
			}
			if err != nil {
				b.err = fmt.Errorf("$%s: %w", EnvBin, err)
				return
			}
			b.path = abs
			return
		}
		b.built = true
		dir, err := os.MkdirTemp("", "omen-test-bin")
		if err != nil {
			b.err = err
			return
		}
		b.path = filepath.Join(dir, "omen")
		// By its import path, from this tree's root or, under go test
		// -trimpath (where the file's path is its import path, no
		// directory), from the test's own directory, which is in it.
		cmd := exec.Command("go", "build", "-o", b.path, cmdPath)
		if _, file, _, ok := runtime.Caller(0); ok && filepath.IsAbs(file) {
			cmd.Dir = filepath.Join(filepath.Dir(file), "..", "..")
		}
		if out, err := cmd.CombinedOutput(); err != nil {
			b.err = fmt.Errorf("go build %s: %w\n%s", cmdPath, err, out)
		}
	})
	return b.path, b.err
}

// Remove deletes the binary Path built, if it did; for TestMain, after
// the tests ran.
func (b *Builder) Remove() {
	if b.built && b.path != "" {
		_ = os.RemoveAll(filepath.Dir(b.path))
	}
}
