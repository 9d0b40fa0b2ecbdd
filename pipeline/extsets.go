package pipeline

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/omen-sidecar/omen/internal/atomicfile"
)

// ExtSetsFile is the file, beside the model snapshot, that keeps the sets
// of external label names learnt from the backfill upstream (see keepOwn),
// so that after a restart a new series does not take a sibling's history
// for its own before they are learnt again. A file apart, not a record of
// the snapshot: the snapshot's format, which a rollback must read, stays
// as it was, and a lost or damaged file only means learning again.
const ExtSetsFile = "backfill-external-labels.json"

// extSetsJSON is ExtSetsFile's content.
type extSetsJSON struct {
	Version int `json:"version"`
	// Upstream is a hash of the upstream's URL without its user: no
	// secret (a password, a token in the query) is written, and a
	// rotated password keeps the sets.
	Upstream string       `json:"upstream"`
	Sets     []extSetJSON `json:"sets"`
}

type extSetJSON struct {
	Names []string `json:"names"`
	First string   `json:"first"`
	Known bool     `json:"known"`
	Seen  int64    `json:"seen"` // unix seconds
}

// upstreamID names the upstream in ExtSetsFile.
func (b *backfill) upstreamID() string {
	u := *b.up().url
	u.User = nil
	sum := sha256.Sum256([]byte(u.String()))
	return hex.EncodeToString(sum[:])
}

// saveExtSets writes the learnt sets to path atomically and durably
// (atomicfile.Write); nothing if the external labels are configured.
// Not the exact matches' (""): it refuses
// every set with labels beyond, and an upstream given external labels
// since (a Prometheus that joined Thanos) would then warm nothing after
// every restart for --backfill.max-age; one exact match learns it again.
func (b *backfill) saveExtSets(path string) error {
	b.mu.Lock()
	f := extSetsJSON{Version: 1, Upstream: b.upstreamID(), Sets: []extSetJSON{}}
	for k, x := range b.ext {
		if k != "" {
			f.Sets = append(f.Sets, extSetJSON{Names: strings.Split(k, "\xff"), First: x.first, Known: x.known, Seen: x.seen})
		}
	}
	named := b.extNames != nil
	b.mu.Unlock()
	if named {
		return nil
	}
	data, err := json.Marshal(f)
	if err != nil {
		return err
	}
	return atomicfile.Write(path, path+".tmp", 0o644, func(f *os.File) error {
		_, err := f.Write(data)
		return err
	})
}

// loadExtSets takes the sets saved in path of this upstream, seen within
// maxAge before now: another upstream's (the URL changed) may add other
// labels, and its are learnt again; configured ones need none. A missing
// file is no error.
func (b *backfill) loadExtSets(path string, now time.Time) error {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	var f extSetsJSON
	if err := json.Unmarshal(data, &f); err != nil {
		return fmt.Errorf("%s: %w", filepath.Base(path), err)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if f.Version != 1 || f.Upstream != b.upstreamID() || b.extNames != nil {
		return nil
	}
	if b.ext == nil {
		b.ext = map[string]extSet{}
	}
	for _, x := range f.Sets {
		key := strings.Join(x.Names, "\xff")
		if key == "" || len(b.ext) >= maxExtSets {
			continue
		}
		b.ext[key] = extSet{first: x.First, known: x.Known, seen: x.Seen}
	}
	b.expireLocked(now) // also takes a set seen in the future as seen now
	return nil
}
