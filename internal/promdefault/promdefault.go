// Package promdefault puts on omen's registry the collectors the
// prometheus module registers on client_golang's default registry (at
// package level) rather than on a registerer it is given. omen's /metrics
// serves its own registry only, so their metrics, which Prometheus shows,
// were missing from it.
package promdefault

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// Adopt registers on reg the collector the default registry holds of
// probe's description (name, help and label names), so that reg shows the
// very metrics the module updates, not copies. The default registry hands
// one out only as the AlreadyRegisteredError of a collector of the same
// description. It reports false, probe taken back, if the default
// registry holds none (a module that no longer keeps it there), and an
// error if it holds one of the name otherwise described. Registered on
// reg already (a second caller on the same registry) is no error; a nil
// reg adopts nothing.
func Adopt(reg prometheus.Registerer, probe prometheus.Collector) (bool, error) {
	if reg == nil {
		return false, nil
	}
	var are prometheus.AlreadyRegisteredError
	switch err := prometheus.DefaultRegisterer.Register(probe); {
	case err == nil:
		prometheus.DefaultRegisterer.Unregister(probe)
		return false, nil
	case !errors.As(err, &are):
		return false, err
	}
	if err := reg.Register(are.ExistingCollector); err != nil && !errors.As(err, new(prometheus.AlreadyRegisteredError)) {
		return false, err
	}
	return true, nil
}
