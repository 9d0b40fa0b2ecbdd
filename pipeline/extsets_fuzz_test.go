package pipeline

import (
	"bytes"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// FuzzExtSets: whatever ExtSetsFile holds, loading it errs or keeps only
// sets seen within the backfill's max-age (a seen time far in the past or
// the future is no set kept for good), and the sets kept are saved and
// loaded back the same.
func FuzzExtSets(f *testing.F) {
	bf, err := newBackfill("http://upstream/api/v1/read", 10)
	require.NoError(f, err)
	bf.ext = map[string]extSet{
		"cluster":            {first: "a", known: true, seen: t0.Unix()},
		"cluster\xffhandler": {first: "b", seen: t0.Add(-time.Hour).Unix()},
	}
	dir := f.TempDir()
	path := filepath.Join(dir, ExtSetsFile)
	require.NoError(f, bf.saveExtSets(path))
	good, err := os.ReadFile(path)
	require.NoError(f, err)
	f.Add(good)
	f.Add(good[:len(good)/2])
	for _, seen := range []int64{math.MinInt64, t0.Unix() - 10_000_000_000, math.MaxInt64} {
		f.Add(bytes.Replace(good, []byte(fmt.Sprint(t0.Unix())), []byte(fmt.Sprint(seen)), 1))
	}
	f.Add([]byte(`{"version":1,"sets":null}`))
	f.Fuzz(func(t *testing.T, in []byte) {
		require.NoError(t, os.WriteFile(path, in, 0o644))
		b, err := newBackfill("http://upstream/api/v1/read", 10)
		require.NoError(t, err)
		if b.loadExtSets(path, t0) != nil {
			return
		}
		for k, x := range b.ext {
			require.NotEmpty(t, k)
			if x.seen > t0.Unix() || x.seen < t0.Add(-b.maxAge).Unix() {
				t.Fatalf("set %q kept, seen at %d: now %d, max-age %v", k, x.seen, t0.Unix(), b.maxAge)
			}
		}
		require.NoError(t, b.saveExtSets(path))
		c, err := newBackfill("http://upstream/api/v1/read", 10)
		require.NoError(t, err)
		require.NoError(t, c.loadExtSets(path, t0))
		require.Equal(t, len(b.ext), len(c.ext))
		for k, x := range b.ext {
			require.Equal(t, x, c.ext[k], k)
		}
	})
}
