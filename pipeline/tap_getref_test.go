package pipeline

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb"
	"github.com/stretchr/testify/require"
)

// TestTapGetRef: the tap's appender tells the series the head holds from
// new ones, as the head's does (storage.GetRef). The write handler's
// --write.max-head-series asks it before it lets a series be created;
// through a tap without it, omen serve refused no series at all (200 000
// new series taken under a limit of 50 000).
func TestTapGetRef(t *testing.T) {
	db, err := tsdb.Open(t.TempDir(), nil, nil, tsdb.DefaultOptions(), nil)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, db.Close()) })
	known := labels.FromStrings("__name__", "known")
	app := db.AppenderV2(context.Background())
	ref, err := app.Append(0, known, 0, time.Now().UnixMilli(), 1, nil, nil, storage.AOptions{})
	require.NoError(t, err)
	require.NoError(t, app.Commit())

	a := (&Pipeline{}).Tap(db).AppenderV2(context.Background())
	defer func() { require.NoError(t, a.Rollback()) }()
	g, ok := a.(storage.GetRef)
	require.True(t, ok, "the tap's appender has no GetRef")
	got, _ := g.GetRef(known, known.Hash())
	require.Equal(t, ref, got)
	unknown := labels.FromStrings("__name__", "new")
	got, _ = g.GetRef(unknown, unknown.Hash())
	require.Zero(t, got)
}
