package pipeline

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/stretchr/testify/require"
)

// TestScoredSampleLatestTimestamp: omen_scored_sample_latest_timestamp_seconds
// is the time of the latest input sample scored over every worker, so a
// backlog resent after an outage shows how old the scores are while the
// scorers keep up. Before the first sample scored it is absent, not 0: at
// 0 for the seconds after every start, a rule on `time() - it` (the
// runbook's reading of how old the scores are) saw scores 56 years old
// and fired at every restart.
func TestScoredSampleLatestTimestamp(t *testing.T) {
	const name = "omen_scored_sample_latest_timestamp_seconds"
	e := newEnv(t, "", nil, nil)
	n, err := testutil.GatherAndCount(e.reg, name)
	require.NoError(t, err)
	require.Zero(t, n, "none scored yet: absent")
	lss := []labels.Labels{labels.FromStrings("__name__", "a"), labels.FromStrings("__name__", "b"), labels.FromStrings("__name__", "c")}
	for i := range 10 {
		e.push(atStep(i), model.MetricTypeGauge, lss, []float64{1, 2, 3})
	}
	// One series further on alone: the latest is the latest of any.
	e.push(atStep(12), model.MetricTypeGauge, lss[1:2], []float64{2})
	e.sync()
	n, err = testutil.GatherAndCount(e.reg, name)
	require.NoError(t, err)
	require.Equal(t, 1, n)
	require.Equal(t, float64(atStep(12))/1e3, testutil.ToFloat64(e.p.m.newest))
}
