package loadgen

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/gogo/protobuf/proto"
	"github.com/golang/snappy"
	"github.com/prometheus/prometheus/prompb"
)

// ProbeResult is the time from a probe write's acknowledgement to omen's
// /api/v1/anomalies showing a score for that sample: the end-to-end
// scoring latency under the rest of the load.
type ProbeResult struct {
	Probes  int     `json:"probes"`
	Missed  int     `json:"missed"` // not scored within probeTimeout
	P50     float64 `json:"ack_to_score_p50_seconds"`
	P99     float64 `json:"ack_to_score_p99_seconds"`
	Max     float64 `json:"ack_to_score_max_seconds"`
	PollGap float64 `json:"poll_interval_seconds"` // the resolution of the figures
	// lastT is the timestamp of the last probe sample written, so the
	// drain check's marker on the same series comes after it.
	lastT int64
}

// probeTimeout is how long a probe waits for its score before it counts as
// missed.
const probeTimeout = 10 * time.Second

// probePoll is the interval between polls: the latency's resolution.
const probePoll = 5 * time.Millisecond

// runProbe writes one sample of the probe series every opts.ProbeEvery
// until ctx ends, and for each acknowledged one polls the anomalies API
// until the series' published timestamp reaches the sample's.
//
// The probe series is the load's last one (the workers leave it out), so a
// receiver that saw the full load before already scores it: a series of its
// own could fall outside omen's --detect.max-series budget. Its values jump
// to 1e12 and then count up by one, which is valid for a counter too.
func runProbe(ctx context.Context, opts *Options, client *http.Client) (*ProbeResult, error) {
	ls, _ := seriesLabels(opts.Series - 1)
	var sel []string
	var pls []prompb.Label
	for _, l := range ls {
		sel = append(sel, fmt.Sprintf("%s=%q", l.name, l.value))
		pls = append(pls, prompb.Label{Name: l.name, Value: l.value})
	}
	q := url.Values{"match[]": {"{" + strings.Join(sel, ",") + "}"}}
	api := opts.ProbeURL + "/api/v1/anomalies?" + q.Encode()
	res := &ProbeResult{PollGap: probePoll.Seconds()}
	var lat []time.Duration
	// A first sample, not timed: where the probe series is a counter, a
	// receiver that has not seen it scores it only from its second sample
	// (a rate needs two), so the first timed probe was always missed, and
	// a drain marker that was the series' first sample never scored.
	last := time.Now().UnixMilli()
	prime, err := proto.Marshal(&prompb.WriteRequest{Timeseries: []prompb.TimeSeries{{
		Labels: pls, Samples: []prompb.Sample{{Timestamp: last, Value: 1e12}},
	}}})
	if err != nil {
		return nil, err
	}
	if err := probeWrite(ctx, client, opts.URL, snappy.Encode(nil, prime)); err != nil && ctx.Err() == nil {
		return nil, fmt.Errorf("probe write: %w", err)
	}
	res.lastT = last
	tick := time.NewTicker(opts.ProbeEvery)
	defer tick.Stop()
	for i := 0; ; i++ {
		select {
		case <-ctx.Done():
			res.fill(lat)
			return res, nil
		case <-tick.C:
		}
		t := max(time.Now().UnixMilli(), last+1)
		last = t
		body, err := proto.Marshal(&prompb.WriteRequest{Timeseries: []prompb.TimeSeries{{
			Labels:  pls,
			Samples: []prompb.Sample{{Timestamp: t, Value: 1e12 + float64(i)}},
		}}})
		if err != nil {
			return nil, err
		}
		// A write under way when the run stops is finished, not abandoned:
		// the receiver may already hold it, and every sample it holds is
		// counted here.
		wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), probeTimeout)
		err = probeWrite(wctx, client, opts.URL, snappy.Encode(nil, body))
		cancel()
		res.lastT = t
		if err != nil {
			return nil, fmt.Errorf("probe write: %w", err)
		}
		acked := time.Now()
		res.Probes++
		seen := false
		for time.Since(acked) < probeTimeout && ctx.Err() == nil {
			ts, err := probeScoredAt(ctx, client, api)
			if err != nil && ctx.Err() == nil {
				return nil, err
			}
			if ts >= t {
				lat = append(lat, time.Since(acked))
				seen = true
				break
			}
			time.Sleep(probePoll)
		}
		if !seen && ctx.Err() == nil {
			res.Missed++
		}
	}
}

// drainSeries is how many series the drain check marks: omen shards series
// over its scorer workers by reference, and 8 series miss one of 2 workers
// with probability 2^-7.
const drainSeries = 8

// drain writes a sample after last (ms) to each of the last drainSeries
// series and waits until the anomalies API shows every one scored.
func drain(ctx context.Context, opts *Options, client *http.Client, last int64) (time.Duration, error) {
	t := max(time.Now().UnixMilli(), last+1)
	req := &prompb.WriteRequest{}
	var sels []string
	for i := opts.Series - drainSeries; i < opts.Series; i++ {
		ls, _ := seriesLabels(i)
		var pls []prompb.Label
		var sel []string
		for _, l := range ls {
			pls = append(pls, prompb.Label{Name: l.name, Value: l.value})
			sel = append(sel, fmt.Sprintf("%s=%q", l.name, l.value))
		}
		sels = append(sels, "{"+strings.Join(sel, ",")+"}")
		req.Timeseries = append(req.Timeseries, prompb.TimeSeries{Labels: pls, Samples: []prompb.Sample{{Timestamp: t, Value: 2e12}}})
	}
	body, err := proto.Marshal(req)
	if err != nil {
		return 0, err
	}
	start := time.Now()
	if err := probeWrite(ctx, client, opts.URL, snappy.Encode(nil, body)); err != nil {
		return 0, fmt.Errorf("drain check write: %w", err)
	}
	for _, sel := range sels {
		api := opts.DrainURL + "/api/v1/anomalies?" + url.Values{"match[]": {sel}}.Encode()
		for {
			ts, err := probeScoredAt(ctx, client, api)
			if err != nil {
				return 0, err
			}
			if ts >= t {
				break
			}
			if time.Since(start) > 10*time.Minute {
				return 0, fmt.Errorf("drain check: %s not scored after 10 minutes", sel)
			}
			select {
			case <-ctx.Done():
				return 0, ctx.Err()
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
	return time.Since(start), nil
}

func (r *ProbeResult) fill(lat []time.Duration) {
	if len(lat) == 0 {
		return
	}
	slices.Sort(lat)
	r.P50, r.P99, r.Max = quantile(lat, 0.5).Seconds(), quantile(lat, 0.99).Seconds(), lat[len(lat)-1].Seconds()
}

func probeWrite(ctx context.Context, client *http.Client, u string, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Encoding", "snappy")
	req.Header.Set("Content-Type", "application/x-protobuf")
	req.Header.Set("X-Prometheus-Remote-Write-Version", "0.1.0")
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	_ = resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("status %d: %s", resp.StatusCode, msg)
	}
	return nil
}

// probeScoredAt returns the probe series' last scored sample time (ms), or
// 0 if it has none yet.
func probeScoredAt(ctx context.Context, client *http.Client, api string) (int64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, api, nil)
	if err != nil {
		return 0, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusServiceUnavailable {
		return 0, nil // not ready yet
	}
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return 0, fmt.Errorf("probe poll %s: status %d: %s", api, resp.StatusCode, msg)
	}
	var out struct {
		Data struct {
			Anomalies []struct {
				Timestamp time.Time `json:"timestamp"`
			} `json:"anomalies"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return 0, fmt.Errorf("probe poll: %w", err)
	}
	if len(out.Data.Anomalies) == 0 {
		return 0, nil
	}
	return out.Data.Anomalies[0].Timestamp.UnixMilli(), nil
}
