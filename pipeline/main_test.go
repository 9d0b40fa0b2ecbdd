package pipeline

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package if a test leaves goroutines behind: workers,
// the forwarder and the derived-input loop all end with Run.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
