package deploy

import (
	"bytes"
	"encoding/json"
	"net/http"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/omen-sidecar/omen/internal/freeport"
	"github.com/omen-sidecar/omen/internal/ready"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"

	"github.com/omen-sidecar/omen/rules"
)

const amConfig = "alertmanager/alertmanager.yml"

// TestAmtoolCheckConfig validates the routing tree with Alertmanager's own
// parser.
func TestAmtoolCheckConfig(t *testing.T) {
	amtool := tool(t, "amtool", "prometheus-alertmanager")
	out := run(t, "alertmanager", amtool, "check-config", "alertmanager.yml")
	require.Contains(t, string(out), "SUCCESS")
}

// TestAlertmanagerRoutes asks amtool where alerts with the labels omen's
// rules put on them are routed.
func TestAlertmanagerRoutes(t *testing.T) {
	amtool := tool(t, "amtool", "prometheus-alertmanager")
	for _, tc := range []struct {
		name   string
		labels []string
		want   string
	}{
		{"series anomaly is a ticket", []string{"alertname=" + rules.AlertSeriesAnomalous, "omen_alert=anomaly", "severity=warning", "namespace=shop", "job=api"}, "anomaly-tickets"},
		{"group anomaly pages and triggers automation", []string{"alertname=" + rules.AlertAnomalyCritical, "omen_alert=anomaly", "severity=critical", "namespace=shop", "job=api"}, "automation-webhook,pagerduty"},
		{"capacity forecast is a ticket", []string{"alertname=DiskFullSoon", "omen_alert=capacity", "severity=warning"}, "anomaly-tickets"},
		{"labelled action goes to the webhook too", []string{"alertname=DiskFullSoon", "omen_alert=capacity", "severity=warning", "omen_action=scale"}, "automation-webhook,anomaly-tickets"},
		{"a labelled action of another rule reaches a person too", []string{"alertname=PodCrashLooping", "severity=critical", "omen_action=restart"}, "automation-webhook,default"},
		{"anything else: the default", []string{"alertname=Watchdog"}, "default"},
		{"health warning to the platform team", []string{"alertname=OmenScoringLagging", "omen_alert=health", "severity=warning"}, "platform-team"},
		{"health critical pages the platform team", []string{"alertname=OmenDown", "omen_alert=health", "severity=critical"}, "platform-pagerduty"},
		{"other alerts keep the default", []string{"alertname=NodeDown", "severity=critical"}, "default"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := run(t, "alertmanager", append([]string{amtool, "config", "routes", "test", "--config.file=alertmanager.yml"}, tc.labels...)...)
			require.Equal(t, tc.want, strings.TrimSpace(string(out)))
		})
	}
}

// TestInhibitionsMatchGeneratedRules checks the inhibit rules name alerts
// and labels the generated rules produce: the page on a group silences its
// single-series tickets only if both carry the group's labels.
func TestInhibitionsMatchGeneratedRules(t *testing.T) {
	var am struct {
		InhibitRules []struct {
			Source []string `yaml:"source_matchers"`
			Target []string `yaml:"target_matchers"`
			Equal  []string `yaml:"equal"`
		} `yaml:"inhibit_rules"`
	}
	require.NoError(t, yaml.Unmarshal(read(t, amConfig), &am))
	rg := baseRules(t)
	alerts := map[string]map[string]string{} // name -> static labels
	for _, g := range rg.Groups {
		for _, r := range g.Rules {
			if r.Alert != "" {
				alerts[r.Alert] = r.Labels
			}
		}
	}
	matcher := regexp.MustCompile(`^(\w+)(=~|!=|=)"(.*)"$`)
	matchesSome := func(ms []string) {
		for _, m := range ms {
			p := matcher.FindStringSubmatch(m)
			require.NotNil(t, p, "matcher %q", m)
			name, op, val := p[1], p[2], p[3]
			if op == "!=" {
				continue
			}
			re := regexp.MustCompile("^(?:" + val + ")$")
			found := false
			for alert, ls := range alerts {
				v := ls[name]
				if name == "alertname" {
					v = alert
				}
				found = found || re.MatchString(v)
			}
			require.True(t, found, "matcher %s matches no generated alert", m)
		}
	}
	require.NotEmpty(t, am.InhibitRules)
	var groupInhibit bool
	for _, ir := range am.InhibitRules {
		matchesSome(ir.Source)
		matchesSome(ir.Target)
		if slices.Contains(ir.Source, `alertname="`+rules.AlertAnomalyCritical+`"`) {
			groupInhibit = true
			require.Contains(t, ir.Target, `alertname="`+rules.AlertSeriesAnomalous+`"`)
			// The critical alert aggregates by group_by: those are the only
			// labels it has to compare.
			require.ElementsMatch(t, []string{"namespace", "job"}, ir.Equal)
			crit, ok := findRule(rg, rules.AlertAnomalyCritical)
			require.True(t, ok)
			require.Contains(t, crit.Expr, "by (namespace, job)")
		}
	}
	require.True(t, groupInhibit, "no inhibition of series anomalies by their group's page")
}

// TestAlertmanagerTemplatesRender renders every notification template of
// the receivers with amtool against Alertmanager's example alerts, so a
// field that does not exist in Alertmanager's data fails here and not when
// the first page goes out.
func TestAlertmanagerTemplatesRender(t *testing.T) {
	amtool := tool(t, "amtool", "prometheus-alertmanager")
	var am struct {
		Receivers []map[string]any `yaml:"receivers"`
	}
	require.NoError(t, yaml.Unmarshal(read(t, amConfig), &am))
	var tmpls []string
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			for _, x := range v {
				walk(x)
			}
		case []any:
			for _, x := range v {
				walk(x)
			}
		case string:
			if strings.Contains(v, "{{") {
				tmpls = append(tmpls, v)
			}
		}
	}
	for _, r := range am.Receivers {
		walk(r)
	}
	require.GreaterOrEqual(t, len(tmpls), 6)
	glob := filepath.Join(t.TempDir(), "none.tmpl")
	write(t, glob, nil)
	for _, tm := range tmpls {
		run(t, "", amtool, "template", "render", "--template.glob="+glob, "--template.text="+tm)
	}
}

// slackReceivers is the shipped configuration's receivers, with their
// Slack messages' templates.
type slackReceivers struct {
	Receivers []struct {
		Name         string `yaml:"name"`
		SlackConfigs []struct {
			SendResolved bool   `yaml:"send_resolved"`
			Title        string `yaml:"title"`
			Text         string `yaml:"text"`
		} `yaml:"slack_configs"`
	} `yaml:"receivers"`
}

// TestTicketsTellSeriesApart renders the anomaly-tickets message with amtool
// for two alerts of one group that differ only in a label of their input
// (the pods of a job): each line must say which series it is about. The
// message printed the summaries alone, which name the input's metric only,
// so the two read the same.
func TestTicketsTellSeriesApart(t *testing.T) {
	amtool := tool(t, "amtool", "prometheus-alertmanager")
	var am slackReceivers
	require.NoError(t, yaml.Unmarshal(read(t, amConfig), &am))
	var text string
	for _, r := range am.Receivers {
		if r.Name == "anomaly-tickets" {
			require.Len(t, r.SlackConfigs, 1)
			text = r.SlackConfigs[0].Text
		}
	}
	require.NotEmpty(t, text, "no anomaly-tickets receiver")

	alert := func(pod, score string) string {
		return `{"status": "firing", "labels": {"alertname": "` + rules.AlertSeriesAnomalous + `", "namespace": "shop", "job": "api",
			"for": "http_requests_total", "pod": "` + pod + `", "omen_alert": "anomaly", "severity": "warning"},
			"annotations": {"summary": "http_requests_total is anomalous: an incident with peak score ` + score + ` (above 1) has gone on for 5m or more."},
			"startsAt": "2026-12-05T08:00:00Z", "endsAt": "0001-01-01T00:00:00Z"}`
	}
	dir := t.TempDir()
	data := filepath.Join(dir, "data.json")
	write(t, data, []byte(`{"receiver": "anomaly-tickets", "status": "firing",
		"groupLabels": {"alertname": "`+rules.AlertSeriesAnomalous+`", "namespace": "shop", "job": "api"},
		"alerts": [`+alert("api-0", "4.00")+`, `+alert("api-1", "2.00")+`]}`))
	glob := filepath.Join(dir, "none.tmpl")
	write(t, glob, nil)
	out := string(run(t, "", amtool, "template", "render", "--template.glob="+glob, "--template.data="+data, "--template.text="+text))
	lines := strings.Split(out, "\n")
	for i, want := range []string{`pod="api-0"`, `pod="api-1"`} {
		j := slices.IndexFunc(lines, func(l string) bool { return strings.Contains(l, want) })
		require.GreaterOrEqual(t, j, 1, "the ticket does not name %s:\n%s", want, out)
		// On the line after its own summary, not another alert's.
		require.Contains(t, lines[j-1], []string{"4.00", "2.00"}[i], "%s is not under its summary:\n%s", want, out)
		// The group's and the routing labels are in the title or say nothing.
		require.NotContains(t, lines[j], "severity=", out)
		require.NotContains(t, lines[j], "namespace=", out)
	}
}

// TestLagInhibitsItsOmenOnly posts alerts to the real Alertmanager running
// the shipped configuration: a lagging omen silences the anomalies scored
// by it (omen_instance, which the shipped scrape configurations put on the
// incident gauges and omen's own metrics), not those another shard scored,
// nor a group's page, which spans shards. Without equal, one lagging shard
// silenced every shard's anomaly alerts: nothing else ties an anomaly alert
// to its omen (its job and instance are its input's).
func TestLagInhibitsItsOmenOnly(t *testing.T) {
	am := tool(t, "prometheus-alertmanager", "prometheus-alertmanager")
	port, err := freeport.Port()
	require.NoError(t, err)
	addr := "127.0.0.1:" + strconv.Itoa(port)
	cfg, err := filepath.Abs(amConfig)
	require.NoError(t, err)
	cmd := exec.Command(am, "--config.file="+cfg, "--storage.path="+t.TempDir(),
		"--web.listen-address="+addr, "--cluster.listen-address=")
	var logs bytes.Buffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	base := "http://" + addr
	require.Eventually(t, func() bool { return ready.OK(base) }, 20*time.Second, 50*time.Millisecond, "Alertmanager not ready:\n%s", &logs)

	omen0, omen1 := "omen-0:9201", "omen-1:9201"
	alert := func(name string, ls map[string]string) map[string]any {
		ls["alertname"] = name
		return map[string]any{"labels": ls}
	}
	alerts := []map[string]any{
		alert("OmenScoringLagging", map[string]string{rules.LabelKind: rules.KindHealth, rules.LabelSeverity: "warning",
			"job": rules.OmenJob, "instance": omen0, rules.LabelOmenInstance: omen0}),
		alert(rules.AlertSeriesAnomalous, map[string]string{rules.LabelKind: rules.KindAnomaly, rules.LabelSeverity: "warning",
			"namespace": "shop", "job": "api", "instance": "10.0.0.7:80", "for": "http_requests_total", rules.LabelOmenInstance: omen0}),
		alert(rules.AlertSeriesAnomalous, map[string]string{rules.LabelKind: rules.KindAnomaly, rules.LabelSeverity: "warning",
			"namespace": "shop", "job": "api", "instance": "10.0.0.8:80", "for": "http_requests_total", rules.LabelOmenInstance: omen1}),
		alert(rules.AlertAnomalyCritical, map[string]string{rules.LabelKind: rules.KindAnomaly, rules.LabelSeverity: "critical",
			"namespace": "pay", "job": "web"}),
	}
	body, err := json.Marshal(alerts)
	require.NoError(t, err)
	resp, err := http.Post(base+"/api/v2/alerts", "application/json", bytes.NewReader(body))
	require.NoError(t, err)
	require.NoError(t, resp.Body.Close())
	require.Equal(t, http.StatusOK, resp.StatusCode)

	// Which alerts are inhibited, by the instance of the input or the page's
	// group; inhibitions are worked out as the alerts are read.
	want := map[string]bool{"OmenScoringLagging": false, "10.0.0.7:80": true, "10.0.0.8:80": false, "pay/web": false}
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		resp, err := http.Get(base + "/api/v2/alerts")
		require.NoError(c, err)
		defer resp.Body.Close()
		var list []struct {
			Labels map[string]string `json:"labels"`
			Status struct {
				InhibitedBy []string `json:"inhibitedBy"`
			} `json:"status"`
		}
		require.NoError(c, json.NewDecoder(resp.Body).Decode(&list))
		got := map[string]bool{}
		for _, a := range list {
			key := a.Labels["alertname"]
			switch key {
			case rules.AlertSeriesAnomalous:
				key = a.Labels["instance"]
			case rules.AlertAnomalyCritical:
				key = a.Labels["namespace"] + "/" + a.Labels["job"]
			}
			got[key] = len(a.Status.InhibitedBy) > 0
		}
		assert.Equal(c, want, got, "inhibited")
	}, 10*time.Second, 50*time.Millisecond)
}

// TestResolvedAlertsSaySo renders the title and text of the receivers that
// send_resolved with amtool, for a group that has resolved and for a
// firing group one of whose alerts has resolved: the resolved message's
// title, and the line of each resolved alert, must say so. They read as
// the firing ones did ("OmenSeriesAnomalous: shop/api", "... is
// anomalous"), and only the colour of Slack's bar told them apart; seen in
// e2e's TestAlertsThroughAlertmanager, whose resolved ticket had the firing
// one's title.
func TestResolvedAlertsSaySo(t *testing.T) {
	amtool := tool(t, "amtool", "prometheus-alertmanager")
	var am slackReceivers
	require.NoError(t, yaml.Unmarshal(read(t, amConfig), &am))
	dir := t.TempDir()
	glob := filepath.Join(dir, "none.tmpl")
	write(t, glob, nil)
	alert := func(status, instance string) string {
		return `{"status": "` + status + `", "labels": {"alertname": "A", "namespace": "shop", "job": "api", "instance": "` + instance + `",
			"for": "x", "omen_alert": "anomaly", "severity": "warning"},
			"annotations": {"summary": "summary of ` + instance + `"},
			"startsAt": "2026-12-05T08:00:00Z", "endsAt": "0001-01-01T00:00:00Z"}`
	}
	render := func(tmpl, status string, alerts ...string) string {
		data := filepath.Join(t.TempDir(), "data.json")
		write(t, data, []byte(`{"receiver": "r", "status": "`+status+`",
			"commonLabels": {"alertname": "A", "namespace": "shop", "job": "api"},
			"alerts": [`+strings.Join(alerts, ", ")+`]}`))
		return string(run(t, "", amtool, "template", "render", "--template.glob="+glob, "--template.data="+data, "--template.text="+tmpl))
	}
	checked := 0
	for _, r := range am.Receivers {
		for _, c := range r.SlackConfigs {
			if !c.SendResolved {
				continue
			}
			checked++
			t.Run(r.Name, func(t *testing.T) {
				require.True(t, strings.HasPrefix(render(c.Title, "resolved", alert("resolved", "b")), "[RESOLVED] "), "title of a resolved group")
				require.False(t, strings.HasPrefix(render(c.Title, "firing", alert("firing", "a"), alert("resolved", "b")), "[RESOLVED]"), "title of a firing group")
				var a, b string
				for _, l := range strings.Split(render(c.Text, "firing", alert("firing", "a"), alert("resolved", "b")), "\n") {
					if strings.Contains(l, "summary of a") {
						a = l
					}
					if strings.Contains(l, "summary of b") {
						b = l
					}
				}
				require.NotEmpty(t, a, "no line for the firing alert")
				require.NotEmpty(t, b, "no line for the resolved alert")
				require.NotContains(t, a, "RESOLVED")
				require.True(t, strings.HasPrefix(b, "[RESOLVED] "), "line of the resolved alert: %q", b)
			})
		}
	}
	require.Equal(t, 2, checked, "receivers with send_resolved Slack messages")
}
