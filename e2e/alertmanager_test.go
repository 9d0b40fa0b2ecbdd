package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/prometheus/prompb"
	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"
)

// The shipped configurations the alerting test runs live.
const (
	shippedAlertmanager = "../deploy/alertmanager/alertmanager.yml"
	shippedScrape       = "../deploy/prometheus/scrape.yml"
)

// endpointFields names, per receiver integration of the shipped
// Alertmanager configuration, the field that holds where it sends. An
// integration not listed fails the test: its messages would leave the
// machine, or go nowhere, instead of reaching the test's sink.
var endpointFields = map[string]string{
	"slack_configs":     "api_url",
	"pagerduty_configs": "url",
	"webhook_configs":   "url",
}

// notification is one message Alertmanager sent to a receiver's endpoint.
type notification struct {
	receiver, integration string
	body                  []byte
}

// slackMessage is the part of a Slack message the templates fill.
type slackMessage struct {
	Channel     string `json:"channel"`
	Attachments []struct {
		Title string `json:"title"`
		Text  string `json:"text"`
		Color string `json:"color"`
	} `json:"attachments"`
}

// pagerdutyEvent is the part of a PagerDuty Events API v2 event the
// receiver's templates fill.
type pagerdutyEvent struct {
	EventAction string `json:"event_action"`
	DedupKey    string `json:"dedup_key"`
	Payload     struct {
		Summary       string            `json:"summary"`
		Severity      string            `json:"severity"`
		CustomDetails map[string]string `json:"custom_details"`
	} `json:"payload"`
}

// webhookMessage is Alertmanager's webhook payload.
type webhookMessage struct {
	Receiver string `json:"receiver"`
	Status   string `json:"status"`
	Alerts   []struct {
		Status      string            `json:"status"`
		Labels      map[string]string `json:"labels"`
		Annotations map[string]string `json:"annotations"`
	} `json:"alerts"`
}

// receiverSink stands in for every receiver's endpoint: Slack, PagerDuty
// and webhooks POST to /<receiver>/<integration>, and it keeps what came.
type receiverSink struct {
	mu  sync.Mutex
	got []notification
}

func (s *receiverSink) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	receiver, integration, _ := strings.Cut(strings.TrimPrefix(r.URL.Path, "/"), "/")
	s.mu.Lock()
	s.got = append(s.got, notification{receiver: receiver, integration: integration, body: b})
	s.mu.Unlock()
	switch integration {
	case "pagerduty":
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusAccepted)
		fmt.Fprint(w, `{"status":"success","message":"Event processed"}`)
	default:
		fmt.Fprint(w, "ok")
	}
}

// of returns the messages sent to the receiver's integration so far.
func (s *receiverSink) of(receiver, integration string) [][]byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out [][]byte
	for _, n := range s.got {
		if n.receiver == receiver && n.integration == integration {
			out = append(out, n.body)
		}
	}
	return out
}

// all returns every message sent so far.
func (s *receiverSink) all() []notification {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.got)
}

// decodeAll decodes each JSON body into a T.
func decodeAll[T any](t testing.TB, bodies [][]byte) []T {
	t.Helper()
	out := make([]T, len(bodies))
	for i, b := range bodies {
		require.NoError(t, json.Unmarshal(b, &out[i]), string(b))
	}
	return out
}

// slackOf decodes the Slack messages sent to receiver.
func (s *receiverSink) slackOf(t testing.TB, receiver string) []slackMessage {
	t.Helper()
	out := decodeAll[slackMessage](t, s.of(receiver, "slack"))
	for _, m := range out {
		require.Len(t, m.Attachments, 1, "%+v", m)
	}
	return out
}

// yamlMap and yamlList read a node of a decoded YAML document, failing the
// test when the shipped file's shape is not what the rewrite expects.
func yamlMap(t testing.TB, v any, where string) map[string]any {
	t.Helper()
	m, ok := v.(map[string]any)
	require.True(t, ok, "%s: a %T, want a mapping", where, v)
	return m
}

func yamlList(t testing.TB, v any, where string) []any {
	t.Helper()
	if v == nil {
		return nil
	}
	l, ok := v.([]any)
	require.True(t, ok, "%s: a %T, want a sequence", where, v)
	return l
}

// shippedAlertmanagerConfig returns the shipped Alertmanager configuration
// with every receiver's endpoint swapped for sink's /<receiver>/<integration>
// and the routes' group_wait and group_interval, where they set them, made
// 1s, so that a test sees a notification within seconds rather than the
// minutes the shipped file waits. Routes, matchers, grouping, continue,
// inhibitions, repeat intervals, send_resolved and templates stay as shipped.
func shippedAlertmanagerConfig(t testing.TB, sink string) string {
	t.Helper()
	raw, err := os.ReadFile(shippedAlertmanager)
	require.NoError(t, err)
	var cfg map[string]any
	require.NoError(t, yaml.Unmarshal(raw, &cfg))

	var shorten func(route map[string]any, where string)
	shorten = func(route map[string]any, where string) {
		for _, k := range []string{"group_wait", "group_interval"} {
			if _, ok := route[k]; ok {
				route[k] = "1s"
			}
		}
		for i, r := range yamlList(t, route["routes"], where+".routes") {
			shorten(yamlMap(t, r, where), fmt.Sprintf("%s.routes[%d]", where, i))
		}
	}
	shorten(yamlMap(t, cfg["route"], "route"), "route")

	for i, r := range yamlList(t, cfg["receivers"], "receivers") {
		rcv := yamlMap(t, r, fmt.Sprintf("receivers[%d]", i))
		name, _ := rcv["name"].(string)
		require.NotEmpty(t, name, "receivers[%d] has no name", i)
		for k, v := range rcv {
			if k == "name" {
				continue
			}
			field, ok := endpointFields[k]
			require.True(t, ok, "receiver %s: %s, whose endpoint this test does not know how to swap", name, k)
			for j, c := range yamlList(t, v, name+"."+k) {
				yamlMap(t, c, fmt.Sprintf("%s.%s[%d]", name, k, j))[field] = fmt.Sprintf("%s/%s/%s", sink, name, strings.TrimSuffix(k, "_configs"))
			}
		}
	}
	out, err := yaml.Marshal(cfg)
	require.NoError(t, err)
	return string(out)
}

// shippedOmenScrape returns the shipped scrape configuration of omen
// (honor_labels, omen_instance and its metric relabelling as shipped)
// scraping target every second.
func shippedOmenScrape(t testing.TB, target string) map[string]any {
	t.Helper()
	raw, err := os.ReadFile(shippedScrape)
	require.NoError(t, err)
	var cfg struct {
		ScrapeConfigs []map[string]any `yaml:"scrape_configs"`
	}
	require.NoError(t, yaml.Unmarshal(raw, &cfg))
	require.Len(t, cfg.ScrapeConfigs, 1, shippedScrape)
	sc := cfg.ScrapeConfigs[0]
	sc["scrape_interval"], sc["scrape_timeout"] = "1s", "1s"
	sc["static_configs"] = []any{map[string]any{"targets": []any{target}}}
	return sc
}

// amAlert is an alert as Alertmanager's API lists it.
type amAlert struct {
	Labels      map[string]string `json:"labels"`
	Annotations map[string]string `json:"annotations"`
	Receivers   []struct {
		Name string `json:"name"`
	} `json:"receivers"`
	Status struct {
		State       string   `json:"state"`
		InhibitedBy []string `json:"inhibitedBy"`
	} `json:"status"`
}

// amAlerts lists the alerts Alertmanager at base holds (nil on error).
func amAlerts(base string) []amAlert {
	resp, err := http.Get(base + "/api/v2/alerts")
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	var list []amAlert
	if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&list) != nil {
		return nil
	}
	return list
}

// TestAlertsThroughAlertmanager runs the generated rules and the shipped
// Alertmanager configuration live: the real Prometheus scrapes a test
// exporter (namespace e2e, job exporter) and remote-writes it to omen,
// which holds 3h of history of both its series; Prometheus scrapes omen
// with the shipped scrape configuration, evaluates the rules `omen rules
// generate` makes (tiers of 5s and 15s instead of 5m, which the generator
// allows) and sends to the real Alertmanager running the shipped routes,
// inhibitions and templates, with only the receivers' endpoints swapped for
// the test's sink and the group waits made 1s. A spike in one series must
// ticket it (anomaly-tickets) with the labels the templates and runbooks
// read, then page its group (automation-webhook and pagerduty), whose page
// inhibits the ticket; the control raises nothing; and when the spike ends
// both resolve, told to the receivers that send_resolved.
func TestAlertsThroughAlertmanager(t *testing.T) {
	need(t, "prometheus")
	am := need(t, "prometheus-alertmanager")
	const namespace = "e2e"
	// An incident ends 5s after its event (not 5m), so that the alerts
	// resolve within the test.
	omen := startOmen(t, "", "--storage.tsdb.out-of-order-time-window=2d", "--snapshot.interval=1h", "--detect.incident-hold=5s")
	requirePipeline(t, omen.URL)
	// The history ends at the origin, a whole second, and the live samples
	// follow it.
	end := time.Now().Add(-2 * time.Second).Truncate(time.Second)
	exp := &exporter{origin: end.UnixMilli()}
	srv := httptest.NewServer(exp)
	defer srv.Close()
	instance := strings.TrimPrefix(srv.URL, "http://")

	sink := &receiverSink{}
	sinkSrv := httptest.NewServer(sink)
	defer sinkSrv.Close()
	amPort := freePort(t)
	amCfg := filepath.Join(t.TempDir(), "alertmanager.yml")
	require.NoError(t, os.WriteFile(amCfg, []byte(shippedAlertmanagerConfig(t, sinkSrv.URL)), 0o644))
	alertmanager := start(t, "alertmanager", amPort, am, "--config.file="+amCfg, "--storage.path="+t.TempDir(),
		"--web.listen-address=127.0.0.1:"+strconv.Itoa(amPort), "--cluster.listen-address=")

	writeHistory(t, omen.URL, instance, exp.origin, end, 3*time.Hour, prompb.Label{Name: "namespace", Value: namespace})
	waitHistoryScored(t, omen.URL)
	alertmanager.WaitReady(60 * time.Second)

	// The ticket's tier is reached 10s before the page's, so that the
	// ticket goes out before the page inhibits it. keep_firing_for bridges
	// a failed scrape of omen on a loaded machine.
	rulesFile := generateRules(t, "alerting: {warning: {score: 1, for: 5s}, critical: {score: 2, for: 15s}, keep_firing_for: 5s}\n")
	// Prometheus sends a new or resolved alert at once, and a firing one
	// again every 5s, valid for four times that: an evaluation late on a
	// loaded machine does not let Alertmanager resolve it meanwhile.
	startPrometheus(t, func(string) string {
		cfg := map[string]any{
			"global":     map[string]any{"scrape_interval": "1s", "evaluation_interval": "1s"},
			"rule_files": []any{rulesFile},
			"alerting": map[string]any{"alertmanagers": []any{map[string]any{
				"static_configs": []any{map[string]any{"targets": []any{alertmanager.Addr}}},
			}}},
			"scrape_configs": []any{
				map[string]any{"job_name": "exporter", "static_configs": []any{map[string]any{
					"targets": []any{instance}, "labels": map[string]any{"namespace": namespace},
				}}},
				shippedOmenScrape(t, omen.Addr),
			},
			"remote_write": []any{map[string]any{
				"url":                   omen.URL + "/api/v1/write",
				"queue_config":          map[string]any{"batch_send_deadline": "1s", "max_shards": 2, "min_backoff": "100ms", "max_backoff": "1s"},
				"write_relabel_configs": []any{map[string]any{"source_labels": []any{"job"}, "regex": "exporter", "action": "keep"}},
			}},
		}
		b, err := yaml.Marshal(cfg)
		require.NoError(t, err)
		return string(b)
	}, "--rules.alert.resend-delay=5s")

	waitFor(t, 60*time.Second, "live samples scored", func() bool {
		a := anomaliesOf(t, omen.URL, seasonalName)
		return len(a) == 1 && time.Since(a[0].Timestamp) < 5*time.Second
	})
	// Every alert Alertmanager lists while the test runs, to check at the
	// end that the control was in none.
	seen := map[string]bool{}
	watch := func() []amAlert {
		list := amAlerts(alertmanager.URL)
		for _, a := range list {
			seen[a.Labels["alertname"]+" for="+a.Labels["for"]] = true
		}
		return list
	}
	find := func(list []amAlert, alertname string) *amAlert {
		for i, a := range list {
			if a.Labels["alertname"] == alertname {
				return &list[i]
			}
		}
		return nil
	}

	exp.spike.Store(true)
	spikeAt := time.Now()
	since := func() time.Duration { return time.Since(spikeAt).Round(100 * time.Millisecond) }

	// The ticket: OmenSeriesAnomalous goes to anomaly-tickets, titled by its
	// group and told by its summary, labels, value, band and runbook.
	const runbooks = "https://github.com/omen-sidecar/omen/blob/main/deploy/runbooks.md#"
	var ticket slackMessage
	waitFor(t, 90*time.Second, "the ticket at anomaly-tickets", func() bool {
		watch()
		for _, m := range sink.slackOf(t, "anomaly-tickets") {
			if m.Attachments[0].Color == "danger" {
				ticket = m
				return true
			}
		}
		return false
	})
	t.Logf("ticket at anomaly-tickets %s after the spike", since())
	att := ticket.Attachments[0]
	require.Equal(t, "#anomalies", ticket.Channel)
	require.Equal(t, "OmenSeriesAnomalous: "+namespace+"/exporter", att.Title)
	for _, want := range []string{
		"*" + seasonalName + " is anomalous: an incident with peak score ",
		"(above 1) has gone on for 5s or more.*",
		fmt.Sprintf(`instance=%q omen_instance=%q`, instance, omen.Addr),
		// Its value and band, found in Prometheus by the annotations'
		// queries, and the explanation of them.
		"\nvalue ", ", expected ", "\nThe value ",
		"runbook: " + runbooks + "OmenSeriesAnomalous",
	} {
		require.Contains(t, att.Text, want)
	}
	require.NotContains(t, att.Text, "n/a", "the ticket's value or band was not found")
	require.NotContains(t, att.Text, controlName)

	// Alertmanager holds it with the labels the routes, the inhibitions and
	// the runbooks read: the input (for), its group (namespace, job), its
	// instance and the omen that scored it (omen_instance).
	list := watch()
	a := find(list, "OmenSeriesAnomalous")
	require.NotNil(t, a, "%+v", list)
	for k, v := range map[string]string{
		"for": seasonalName, "namespace": namespace, "job": "exporter", "instance": instance,
		"omen_instance": omen.Addr, "severity": "warning", "omen_alert": "anomaly",
	} {
		require.Equal(t, v, a.Labels[k], "label %s of %v", k, a.Labels)
	}
	require.Equal(t, runbooks+"OmenSeriesAnomalous", a.Annotations["runbook_url"])
	var receivers []string
	for _, r := range a.Receivers {
		receivers = append(receivers, r.Name)
	}
	require.Equal(t, []string{"anomaly-tickets"}, receivers, "the ticket's receivers")

	// The page: OmenAnomalyCritical, one for the group, goes to the
	// automation hook and on (continue) to pagerduty.
	var hook webhookMessage
	waitFor(t, 60*time.Second, "the page at automation-webhook", func() bool {
		watch()
		for _, m := range decodeAll[webhookMessage](t, sink.of("automation-webhook", "webhook")) {
			if m.Status == "firing" {
				hook = m
				return true
			}
		}
		return false
	})
	t.Logf("page at automation-webhook %s after the spike", since())
	require.Len(t, hook.Alerts, 1, "%+v", hook)
	require.Equal(t, "OmenAnomalyCritical", hook.Alerts[0].Labels["alertname"])
	require.Equal(t, namespace, hook.Alerts[0].Labels["namespace"])
	require.Equal(t, "exporter", hook.Alerts[0].Labels["job"])
	require.Equal(t, "critical", hook.Alerts[0].Labels["severity"])
	require.NotContains(t, hook.Alerts[0].Labels, "omen_instance", "the page spans shards")
	require.Equal(t, runbooks+"OmenAnomalyCritical", hook.Alerts[0].Annotations["runbook_url"])
	var page pagerdutyEvent
	waitFor(t, 30*time.Second, "the page at pagerduty", func() bool {
		watch()
		for _, e := range decodeAll[pagerdutyEvent](t, sink.of("pagerduty", "pagerduty")) {
			if e.EventAction == "trigger" {
				page = e
				return true
			}
		}
		return false
	})
	require.Equal(t, "critical", page.Payload.Severity, "only critical alerts page")
	require.Contains(t, page.Payload.Summary, "Anomalies in namespace="+namespace+", job=exporter: an incident with peak score ")
	require.Equal(t, runbooks+"OmenAnomalyCritical", page.Payload.CustomDetails["runbook"])
	require.Contains(t, page.Payload.CustomDetails["description"], "Worst: "+seasonalName+"{instance=")

	// While the page fires, it inhibits its group's ticket.
	waitFor(t, 30*time.Second, "the ticket inhibited by the page", func() bool {
		a := find(watch(), "OmenSeriesAnomalous")
		return a != nil && a.Status.State == "suppressed" && len(a.Status.InhibitedBy) > 0
	})

	// The spike ends: the incident ends, both alerts resolve, and the
	// receivers that send_resolved are told.
	exp.spike.Store(false)
	endAt := time.Now()
	waitFor(t, 90*time.Second, "the page resolved at pagerduty", func() bool {
		watch()
		return slices.ContainsFunc(decodeAll[pagerdutyEvent](t, sink.of("pagerduty", "pagerduty")), func(e pagerdutyEvent) bool {
			return e.EventAction == "resolve" && e.DedupKey == page.DedupKey
		})
	})
	var resolved slackMessage
	waitFor(t, 30*time.Second, "the ticket resolved at anomaly-tickets", func() bool {
		watch()
		for _, m := range sink.slackOf(t, "anomaly-tickets") {
			if m.Attachments[0].Color == "good" {
				resolved = m
				return true
			}
		}
		return false
	})
	// The resolved ticket says so in its title and on its alert's line,
	// not only in the colour of its bar.
	require.Equal(t, "[RESOLVED] OmenSeriesAnomalous: "+namespace+"/exporter", resolved.Attachments[0].Title)
	require.True(t, strings.HasPrefix(resolved.Attachments[0].Text, "[RESOLVED] *"+seasonalName+" is anomalous"), resolved.Attachments[0].Text)
	t.Logf("resolved %s after the spike ended", time.Since(endAt).Round(100*time.Millisecond))

	// The control raised nothing; nothing reached a receiver the routes do
	// not name for these alerts; automation-webhook does not send_resolved.
	watch()
	for k := range seen {
		require.NotContains(t, k, controlName)
	}
	for _, n := range sink.all() {
		require.Contains(t, []string{"anomaly-tickets/slack", "automation-webhook/webhook", "pagerduty/pagerduty"}, n.receiver+"/"+n.integration, string(n.body))
		require.NotContains(t, string(n.body), controlName)
	}
	for _, m := range decodeAll[webhookMessage](t, sink.of("automation-webhook", "webhook")) {
		require.Equal(t, "firing", m.Status)
	}
}
