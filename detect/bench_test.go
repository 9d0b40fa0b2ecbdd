package detect

import (
	"fmt"
	"testing"
)

// BenchmarkUpdate measures the steady-state cost of scoring one sample and
// the per-series state.
//
//	go test -run '^$' -bench Update -benchmem -count=6 ./detect/
func BenchmarkUpdate(b *testing.B) {
	for _, bc := range []struct {
		name    string
		members int
	}{
		{"members=default", MemberDefault},
		{"members=all", MemberAll},
		{"members=no-spectral", MemberAll &^ MemberSpectral},
		{"members=level", MemberLevel},
	} {
		b.Run(bc.name, func(b *testing.B) {
			ts, v := series(1, 1<<16, 2, 30000, 50000)
			o := DefaultOptions()
			o.Members = bc.members
			d, err := New(o)
			if err != nil {
				b.Fatal(err)
			}
			// Past the warm-up, the first period search and forest fit.
			for i := range 4096 {
				d.Update(ts[i], v[i])
			}
			b.ReportAllocs()
			i := 4096
			for b.Loop() {
				d.Update(ts[i], v[i])
				i++
				if i == len(ts) {
					i = 4096
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N), "ns/sample")
			b.ReportMetric(float64(StateSize(bc.members)), "B/series")
		})
	}
}

// BenchmarkSnapshot measures MarshalBinary, which runs once per series per
// snapshot, off the hot path.
func BenchmarkSnapshot(b *testing.B) {
	d := warmDetector(b)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := d.MarshalBinary(); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(StateSize(0)), fmt.Sprintf("B/%s", "series"))
}

// BenchmarkRestore measures UnmarshalBinary, which runs once per series at
// a restart, as each series claims its restored state: the restart's
// garbage is its allocations times the series.
func BenchmarkRestore(b *testing.B) {
	d := warmDetector(b)
	data, err := d.MarshalBinary()
	if err != nil {
		b.Fatal(err)
	}
	var r Detector
	b.ReportAllocs()
	for b.Loop() {
		if err := r.UnmarshalBinary(data); err != nil {
			b.Fatal(err)
		}
	}
}

// warmDetector returns a Detector with the default options that has taken
// in 3 000 samples of a seasonal series: its state as a snapshot finds it.
func warmDetector(b *testing.B) *Detector {
	d, err := New(DefaultOptions())
	if err != nil {
		b.Fatal(err)
	}
	ts, v := series(2, 3000, 1)
	for i := range ts {
		d.Update(ts[i], v[i])
	}
	return d
}
