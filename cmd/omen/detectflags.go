package main

import (
	"fmt"
	"math"

	"github.com/alecthomas/kingpin/v2"

	"github.com/omen-sidecar/omen/detect"
)

// detectorFlags registers on cl the --detect.* flags of a CSV command's
// detector: those a selection of omen serve's configuration sets
// (direction, false_alarm_rate, min_deviation_abs and _rel, flatline) and
// the detector's own, at omen serve's defaults. The function it returns
// gives the options they make, once the flags are parsed.
func detectorFlags(cl *kingpin.CmdClause) func() (detect.Options, error) {
	def := detect.DefaultOptions()
	o := def
	var (
		direction string
		flatline  bool
	)
	cl.Flag("detect.direction", "Deviations that count: both, up or down.").Default(def.Direction.String()).EnumVar(&direction, "both", "up", "down")
	cl.Flag("detect.min-deviation-abs", "Deviations from yhat smaller than this never score above 1.").Default("0").Float64Var(&o.MinDeviationAbs)
	cl.Flag("detect.min-deviation-rel", "Deviations smaller than this fraction of |yhat| never score above 1.").Default("0").Float64Var(&o.MinDeviationRel)
	cl.Flag("detect.valid-min", "Values below this score as anomalous and are not learnt.").Default(fmt.Sprint(math.Inf(-1))).Float64Var(&o.ValidMin)
	cl.Flag("detect.valid-max", "Values above this score as anomalous and are not learnt.").Default(fmt.Sprint(math.Inf(1))).Float64Var(&o.ValidMax)
	cl.Flag("detect.warmup-samples", "Samples learnt before scoring starts.").Default(fmt.Sprint(def.WarmupSamples)).IntVar(&o.WarmupSamples)
	cl.Flag("detect.false-alarm-rate", "Per-sample budget of scores above 1 on normal data.").Default(fmt.Sprint(def.FalseAlarmRate)).Float64Var(&o.FalseAlarmRate)
	cl.Flag("detect.refractory-samples", "Samples after an alert during which weaker scores are damped.").Default(fmt.Sprint(def.RefractorySamples)).IntVar(&o.RefractorySamples)
	cl.Flag("detect.flatline", "Score a run of samples equal to the one before, rare for the series (a stuck value), above 1: a selection's flatline: true.").BoolVar(&flatline)
	cl.Flag("detect.members", "Bit set of detector members, for ablation (0: the default set).").Hidden().Default("0").IntVar(&o.Members)
	return func() (detect.Options, error) {
		got := o
		d, err := detect.ParseDirection(direction)
		if err != nil {
			return detect.Options{}, err
		}
		got.Direction = d
		if flatline {
			// As omen serve adds it to a selection's detector.
			if got.Members == 0 {
				got.Members = detect.MemberDefault
			}
			got.Members |= detect.MemberFlat
		}
		return got, nil
	}
}
