// Package detect scores streaming samples of one series for anomalies.
//
// A Detector takes samples in arrival order and returns, for each, a
// calibrated anomaly score (vmanomaly's convention: >= 0, above 1 means
// anomalous) and the expected band yhat, yhat_lower, yhat_upper. The score at
// time t uses only samples up to t. Several members score each sample
// (a level residual, a seasonal residual, lag and phase deviations, a
// level-shift and a variance-change statistic, spectral residual saliency, an
// Isolation Forest over the other members' features, a breakout beyond
// the range seen so far, a sustained deviation from the same phase of a
// long, e.g. weekly, season kept in a coarse three-week ring, a run of
// contexts of the last few samples not seen for a while, and a run of
// samples equal to the one before, longer than the series makes); each
// member's statistic is calibrated online against its own recent record
// (see Tail; the last one against the longest run the series made), and
// the combined score is the largest of them, scaled so that on normal data
// the fraction of samples above 1 is about the false-alarm budget.
//
// The package is pure Go and imports nothing else of omen's.
package detect

import (
	"errors"
	"fmt"
	"math"
)

// Direction says which deviations from the expectation count as anomalous.
type Direction int

// Directions.
const (
	Both Direction = iota // above or below yhat
	Up                    // only above yhat
	Down                  // only below yhat
)

// String returns "both", "up" or "down".
func (d Direction) String() string {
	switch d {
	case Both:
		return "both"
	case Up:
		return "up"
	case Down:
		return "down"
	}
	return fmt.Sprintf("Direction(%d)", int(d))
}

// ParseDirection parses "both", "up" or "down".
func ParseDirection(s string) (Direction, error) {
	switch s {
	case "both", "":
		return Both, nil
	case "up":
		return Up, nil
	case "down":
		return Down, nil
	}
	return Both, fmt.Errorf("direction %q: want both, up or down", s)
}

// Member flags select the detector's members; used for ablation.
const (
	MemberLevel    = 1 << iota // robust residual against the level
	MemberSeasonal             // robust residual against the same phase of past seasons
	MemberLag                  // change from the previous sample
	MemberShift                // short-term mean against the level (level shifts)
	MemberVariance             // short-term against long-term spread (noise bursts, flatlines)
	MemberSpectral             // spectral residual saliency
	MemberForest               // Isolation Forest over the feature vector
	MemberRange                // breakout beyond the range seen so far
	MemberLong                 // residual against the same phase of past long (weekly) seasons
	MemberNovelty              // contexts of the last few samples not seen for a while
	MemberFlat                 // runs of samples equal to the one before, rare for the series (a stuck value)

	MemberAll = MemberLevel | MemberSeasonal | MemberLag | MemberShift | MemberVariance | MemberSpectral | MemberForest | MemberRange | MemberLong | MemberNovelty | MemberFlat

	// MemberDefault is the set DefaultOptions uses: the members that
	// together score best on NAB (see docs/benchmarks.md, ablation). The
	// others stay available; on NAB each adds more false alarms than
	// detections, because a spike or shift that they notice is mostly
	// noticed by these already. The flat member is not among them: it
	// flags NAB's unlabelled outages of the tweet counts (all exactly 0
	// for two hours), standard 75.16 → 74.93; the pipeline turns it on
	// for the selections configured with `flatline: true`.
	MemberDefault = MemberLevel | MemberSeasonal | MemberShift | MemberRange | MemberLong | MemberNovelty
)

// Options configure a Detector. The zero value of a field means "default"
// only where the field's comment says so; start from DefaultOptions.
type Options struct {
	// Direction restricts which deviations are scored.
	Direction Direction
	// MinDeviationAbs and MinDeviationRel: a sample whose distance from yhat
	// is below max(MinDeviationAbs, MinDeviationRel*|yhat|) scores at most
	// ScoreCapBelowMinDeviation, so tiny but statistically rare wiggles on a
	// very quiet series do not alert.
	MinDeviationAbs, MinDeviationRel float64
	// ValidMin and ValidMax: samples outside [ValidMin, ValidMax] score
	// OutOfRangeScore and are not learnt from. Use ±Inf for no bound
	// (±Inf samples are out of range regardless; see NoValue for the
	// finite ones beyond float32's range).
	ValidMin, ValidMax float64
	// WarmupSamples is the number of samples learnt before scoring starts;
	// until then Update returns score 0 and Ready is false.
	WarmupSamples int
	// FalseAlarmRate is the per-sample budget of scores above 1 on normal
	// data, in [MinFalseAlarmRate, 0.5).
	FalseAlarmRate float64
	// RefractorySamples: after a score above 1, the next RefractorySamples
	// scores are damped (×1/4), so one event raises one alert rather than a
	// burst; while the event goes on (scores above 0.8) the period does not
	// end. 0 disables.
	RefractorySamples int
	// Members is a bit set of Member* flags; 0 means MemberDefault.
	Members int
	// Seed seeds the Isolation Forest's random splits, so runs repeat.
	Seed uint64
}

// OutOfRangeScore is the score of a sample outside [ValidMin, ValidMax],
// and of ±Inf.
const OutOfRangeScore = 1.5

// NoValue reports whether v is no measurement: NaN, or finite beyond
// float32's range (which the window of recent samples is kept in). No
// measurement comes near that; what does is a sentinel, Java's
// Double.MAX_VALUE as a JMX exporter's "no value" (the minimum of an empty
// window, for as long as it is empty). Learnt, it made the band infinite
// for good and scored +Inf, which JSON cannot carry; scored out of range,
// an idle stretch was an incident. Like a NaN, it scores 0 with no band.
func NoValue(v float64) bool { return !Measured(v) && !math.IsInf(v, 0) }

// Measured reports whether v is a measurement the models learn from:
// within float32's range, so not NaN, ±Inf or a sentinel beyond it.
func Measured(v float64) bool { return math.Abs(v) <= math.MaxFloat32 }

// ScoreCapBelowMinDeviation caps the score of a sample within the minimum
// deviation of yhat: below the alerting level.
const ScoreCapBelowMinDeviation = 0.99

// DefaultOptions returns the configuration used for every series.
func DefaultOptions() Options {
	return Options{
		Direction:         Both,
		ValidMin:          math.Inf(-1),
		ValidMax:          math.Inf(1),
		WarmupSamples:     64,
		FalseAlarmRate:    1.5e-3,
		RefractorySamples: 100,
		Members:           MemberDefault,
		Seed:              1,
	}
}

// MinFalseAlarmRate is the smallest FalseAlarmRate: each member's record
// window is √n/FalseAlarmRate samples (see Detector.window), up to three
// times that, which its tail holds in eight blocks of a uint32 length and
// the window in an int. At 1e-9 the longest is about 8.5e9 samples (a false
// alarm a series every 475 years at a 15 s scrape); at about 3e-19 the
// int overflowed and the window came out negative, a smaller rate giving
// more alarms.
const MinFalseAlarmRate = 1e-9

// Validate rejects nonsense with an error that names the option.
func (o Options) Validate() error {
	switch {
	case o.Direction != Both && o.Direction != Up && o.Direction != Down:
		return fmt.Errorf("direction %d: want Both, Up or Down", o.Direction)
	case o.MinDeviationAbs < 0 || math.IsNaN(o.MinDeviationAbs):
		return fmt.Errorf("minimum absolute deviation %v: want >= 0", o.MinDeviationAbs)
	case o.MinDeviationRel < 0 || math.IsNaN(o.MinDeviationRel):
		return fmt.Errorf("minimum relative deviation %v: want >= 0", o.MinDeviationRel)
	case math.IsNaN(o.ValidMin) || math.IsNaN(o.ValidMax) || o.ValidMin >= o.ValidMax:
		return fmt.Errorf("valid range [%v, %v]: want min < max", o.ValidMin, o.ValidMax)
	case o.WarmupSamples < 0:
		return fmt.Errorf("warm-up %d samples: want >= 0", o.WarmupSamples)
	case !(o.FalseAlarmRate >= MinFalseAlarmRate && o.FalseAlarmRate < 0.5):
		return fmt.Errorf("false-alarm rate %v: want in [%g, 0.5)", o.FalseAlarmRate, MinFalseAlarmRate)
	case o.RefractorySamples < 0:
		return fmt.Errorf("refractory period %d samples: want >= 0", o.RefractorySamples)
	case o.Members&^MemberAll != 0:
		return errors.New("members: unknown member flag")
	}
	return nil
}
