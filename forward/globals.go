package forward

import (
	"slices"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/omen-sidecar/omen/internal/promdefault"
)

// moduleGlobals are the metrics of the prometheus module's remote storage
// that it registers on client_golang's default registry (promauto at
// package level) rather than on the registerer it is given: unlabelled
// counters, there from the process's start. omen's /metrics serves its own
// registry only, so they were missing from it.
var moduleGlobals = []string{
	"prometheus_remote_storage_samples_in_total",
	"prometheus_remote_storage_exemplars_in_total",
	"prometheus_remote_storage_histograms_in_total",
	"prometheus_remote_storage_string_interner_zero_reference_releases_total",
}

// registerModuleGlobals registers on reg the module's own collectors of
// the metrics named in names that it put on the default registry, so that
// they are on reg as they are in Prometheus (see promdefault.Adopt), each
// probed with the help read from the default registry; a name it does not
// hold (a module that registers it on reg itself) is skipped.
func registerModuleGlobals(reg prometheus.Registerer, names []string) error {
	if reg == nil {
		return nil
	}
	mfs, err := prometheus.DefaultGatherer.Gather()
	if err != nil {
		return err
	}
	for _, mf := range mfs {
		if !slices.Contains(names, mf.GetName()) || mf.GetType() != dto.MetricType_COUNTER || len(mf.GetMetric()) != 1 || len(mf.GetMetric()[0].GetLabel()) != 0 {
			continue
		}
		probe := prometheus.NewCounter(prometheus.CounterOpts{Name: mf.GetName(), Help: mf.GetHelp()})
		if _, err := promdefault.Adopt(reg, probe); err != nil {
			return err
		}
	}
	return nil
}
