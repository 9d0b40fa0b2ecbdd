package detect

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math"
)

// snapshotMagic and snapshotVersion head every snapshot. The version changes
// whenever state's layout or meaning changes; older snapshots are rejected
// rather than misread, and the series simply warms up again.
const (
	snapshotMagic   = "omdt"
	snapshotVersion = 5
)

// wireOptions is Options with fixed-size fields, for the snapshot.
type wireOptions struct {
	Direction                        int8
	MinDeviationAbs, MinDeviationRel float64
	ValidMin, ValidMax               float64
	WarmupSamples                    int64
	FalseAlarmRate                   float64
	RefractorySamples                int64
	Members                          int64
	Seed                             uint64
}

// MarshalBinary encodes the options and everything learnt:
//
//	"omdt" | version uint16 | options | state | CRC-32 (IEEE) of all before it
//
// little-endian throughout.
func (d *Detector) MarshalBinary() ([]byte, error) {
	var b bytes.Buffer
	b.Grow(len(snapshotMagic) + 2 + binary.Size(wireOptions{}) + binary.Size(&d.st) + 4)
	b.WriteString(snapshotMagic)
	o := d.opts
	w := wireOptions{
		Direction: int8(o.Direction), MinDeviationAbs: o.MinDeviationAbs, MinDeviationRel: o.MinDeviationRel,
		ValidMin: o.ValidMin, ValidMax: o.ValidMax, WarmupSamples: int64(o.WarmupSamples),
		FalseAlarmRate: o.FalseAlarmRate, RefractorySamples: int64(o.RefractorySamples),
		Members: int64(o.Members), Seed: o.Seed,
	}
	for _, v := range []any{uint16(snapshotVersion), &w, &d.st} {
		if err := binary.Write(&b, binary.LittleEndian, v); err != nil {
			return nil, fmt.Errorf("encode detector: %w", err)
		}
	}
	_ = binary.Write(&b, binary.LittleEndian, crc32.ChecksumIEEE(b.Bytes()))
	return b.Bytes(), nil
}

// UnmarshalBinary restores a Detector from MarshalBinary's output. It
// rejects another version, a wrong length, a bad checksum or invalid
// options with an error and leaves d unchanged.
func (d *Detector) UnmarshalBinary(data []byte) error {
	hdr := len(snapshotMagic) + 2
	if len(data) < hdr+4 || string(data[:len(snapshotMagic)]) != snapshotMagic {
		return errors.New("decode detector: not a detector snapshot")
	}
	if v := binary.LittleEndian.Uint16(data[len(snapshotMagic):]); v != snapshotVersion {
		return fmt.Errorf("decode detector: snapshot version %d, want %d", v, snapshotVersion)
	}
	want := hdr + binary.Size(wireOptions{}) + binary.Size(&d.st) + 4
	if len(data) != want {
		return fmt.Errorf("decode detector: %d bytes, want %d", len(data), want)
	}
	body, sum := data[:len(data)-4], binary.LittleEndian.Uint32(data[len(data)-4:])
	if crc32.ChecksumIEEE(body) != sum {
		return errors.New("decode detector: checksum mismatch")
	}
	r := bytes.NewReader(body[hdr:])
	var w wireOptions
	var st state
	if err := binary.Read(r, binary.LittleEndian, &w); err != nil {
		return fmt.Errorf("decode detector options: %w", err)
	}
	if err := binary.Read(r, binary.LittleEndian, &st); err != nil {
		return fmt.Errorf("decode detector state: %w", err)
	}
	o := Options{
		Direction: Direction(w.Direction), MinDeviationAbs: w.MinDeviationAbs, MinDeviationRel: w.MinDeviationRel,
		ValidMin: w.ValidMin, ValidMax: w.ValidMax, WarmupSamples: int(w.WarmupSamples),
		FalseAlarmRate: w.FalseAlarmRate, RefractorySamples: int(w.RefractorySamples),
		Members: int(w.Members), Seed: w.Seed,
	}
	if err := o.Validate(); err != nil {
		return fmt.Errorf("decode detector: %w", err)
	}
	if math.IsNaN(st.Level.M) {
		return errors.New("decode detector: corrupt state")
	}
	d.opts, d.st = o, st
	if d.sc == nil {
		d.sc = NewScratch()
	}
	return nil
}

// StateSize returns the bytes of learnt state a Detector keeps per series,
// excluding the Scratch it may share with other Detectors.
func StateSize() int { return binary.Size(&state{}) }
