package deploy

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/relabel"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/prometheus/prometheus/promql/promqltest"
	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/kustomize/api/filesys"
	"sigs.k8s.io/kustomize/api/krusty"

	omenconfig "github.com/omen-sidecar/omen/config"
	"github.com/omen-sidecar/omen/forward"
	"github.com/omen-sidecar/omen/pipeline"
	"github.com/omen-sidecar/omen/rules"
	"github.com/omen-sidecar/omen/tsdb"
)

// kinds are the only resources omen's manifests may contain, each decoded
// into its Kubernetes API type (or the CRD mirror of crd_test.go). RBAC kinds
// are absent on purpose: omen needs no API permissions.
var kinds = map[string]func() any{
	"v1/Namespace":                            func() any { return &corev1.Namespace{} },
	"v1/ServiceAccount":                       func() any { return &corev1.ServiceAccount{} },
	"v1/Service":                              func() any { return &corev1.Service{} },
	"v1/ConfigMap":                            func() any { return &corev1.ConfigMap{} },
	"apps/v1/StatefulSet":                     func() any { return &appsv1.StatefulSet{} },
	"networking.k8s.io/v1/NetworkPolicy":      func() any { return &networkingv1.NetworkPolicy{} },
	"policy/v1/PodDisruptionBudget":           func() any { return &policyv1.PodDisruptionBudget{} },
	"autoscaling/v2/HorizontalPodAutoscaler":  func() any { return &autoscalingv2.HorizontalPodAutoscaler{} },
	"monitoring.coreos.com/v1/ServiceMonitor": func() any { return &serviceMonitor{} },
	"monitoring.coreos.com/v1/PrometheusRule": func() any { return &prometheusRule{} },
	"keda.sh/v1alpha1/ScaledObject":           func() any { return &scaledObject{} },
}

type object struct {
	kind, name, namespace string
	obj                   any
}

// strict converts a decoded YAML document to JSON and decodes it into v,
// refusing unknown fields, as the API server's strict field validation does.
func strict(doc any, v any) error {
	b, err := json.Marshal(doc)
	if err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	return dec.Decode(v)
}

// strictYAML decodes one YAML document strictly into v.
func strictYAML(b []byte, v any) error {
	var doc any
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return err
	}
	return strict(doc, v)
}

// decodeManifests decodes every document of a YAML stream into its type.
func decodeManifests(b []byte) ([]object, error) {
	dec := yaml.NewDecoder(bytes.NewReader(b))
	var out []object
	for {
		var doc map[string]any
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, err
		}
		if doc == nil {
			continue
		}
		av, _ := doc["apiVersion"].(string)
		k, _ := doc["kind"].(string)
		mk, ok := kinds[av+"/"+k]
		if !ok {
			return nil, fmt.Errorf("unexpected resource %s %s", av, k)
		}
		obj := mk()
		if err := strict(doc, obj); err != nil {
			return nil, fmt.Errorf("%s: %w", k, err)
		}
		meta, _ := doc["metadata"].(map[string]any)
		name, _ := meta["name"].(string)
		ns, _ := meta["namespace"].(string)
		if errs := validation.IsDNS1123Subdomain(name); len(errs) > 0 {
			return nil, fmt.Errorf("%s name %q: %s", k, name, strings.Join(errs, "; "))
		}
		out = append(out, object{kind: k, name: name, namespace: ns, obj: obj})
	}
}

// notManifests are YAML files under deploy/kubernetes that Kubernetes never
// sees, each decoded strictly into the type of the tool that reads it.
var notManifests = map[string]func() any{
	"overlays/logs/loki-ruler.yaml": func() any { return &lokiRuler{} },
}

// TestManifestFilesDecode decodes every manifest file on its own, so the
// check holds without kustomize too.
func TestManifestFilesDecode(t *testing.T) {
	n := 0
	err := filepath.WalkDir("kubernetes", func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || filepath.Ext(p) != ".yaml" || d.Name() == "kustomization.yaml" {
			return err
		}
		rel, _ := filepath.Rel("kubernetes", p)
		t.Run(filepath.ToSlash(rel), func(t *testing.T) {
			if mk, ok := notManifests[filepath.ToSlash(rel)]; ok {
				require.NoError(t, strictYAML(read(t, p), mk()))
				return
			}
			objs, err := decodeManifests(read(t, p))
			require.NoError(t, err)
			require.NotEmpty(t, objs)
			n += len(objs)
		})
		return nil
	})
	require.NoError(t, err)
	require.GreaterOrEqual(t, n, 13, "manifests decoded")
}

// kustomizations are the folders `kubectl apply -k` is meant for.
var kustomizations = []string{
	"kubernetes/base",
	"kubernetes/overlays/sharded",
	"kubernetes/overlays/predictive-scaling-keda",
	"kubernetes/overlays/predictive-scaling-hpa",
	"kubernetes/overlays/logs",
	"grafana",
}

// TestEveryOverlayListed keeps kustomizations complete.
func TestEveryOverlayListed(t *testing.T) {
	dirs, err := filepath.Glob("kubernetes/overlays/*")
	require.NoError(t, err)
	for _, d := range dirs {
		require.Contains(t, kustomizations, filepath.ToSlash(d))
	}
}

// build runs kustomize's own library (what `kustomize build` and `kubectl
// kustomize` run), so the check needs no binary on the machine.
func build(t *testing.T, dir string) []object {
	t.Helper()
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	rm, err := k.Run(filesys.MakeFsOnDisk(), dir)
	require.NoError(t, err, "kustomize build %s", dir)
	out, err := rm.AsYaml()
	require.NoError(t, err, "kustomize build %s", dir)
	objs, err := decodeManifests(out)
	require.NoError(t, err, "%s:\n%s", dir, out)
	return objs
}

// TestKustomizeBuild builds every kustomization with kustomize, decodes the
// output into the API types and checks how the pieces fit together.
func TestKustomizeBuild(t *testing.T) {
	checks := map[string]func(t *testing.T, objs []object, d deployment){
		"kubernetes/base":                             func(*testing.T, []object, deployment) {},
		"kubernetes/overlays/sharded":                 checkSharded,
		"kubernetes/overlays/predictive-scaling-keda": checkKEDA,
		"kubernetes/overlays/predictive-scaling-hpa":  checkHPA,
		"kubernetes/overlays/logs":                    checkLogs,
	}
	for _, dir := range kustomizations {
		t.Run(dir, func(t *testing.T) {
			objs := build(t, dir)
			if dir == "grafana" {
				checkGrafanaConfigMaps(t, objs)
				return
			}
			check, ok := checks[dir]
			require.True(t, ok, "no check for %s", dir)
			check(t, objs, checkOmen(t, objs))
		})
	}
}

func find[T any](t *testing.T, objs []object, kind, name string) T {
	t.Helper()
	for _, o := range objs {
		if o.kind == kind && o.name == name {
			return o.obj.(T)
		}
	}
	require.Failf(t, "missing object", "%s %s", kind, name)
	var zero T
	return zero
}

func all[T any](objs []object, kind string) []T {
	var out []T
	for _, o := range objs {
		if o.kind == kind {
			out = append(out, o.obj.(T))
		}
	}
	return out
}

// subset reports whether every label of sel is in ls.
func subset(sel, ls map[string]string) bool {
	for k, v := range sel {
		if ls[k] != v {
			return false
		}
	}
	return len(sel) > 0
}

// deployment is what checkOmen learnt about the built omen.
type deployment struct {
	sts     *appsv1.StatefulSet
	args    map[string][]string
	config  *omenconfig.Config
	service *corev1.Service
	netpol  *networkingv1.NetworkPolicy
}

// checkOmen checks the omen parts every kustomization shares.
func checkOmen(t *testing.T, objs []object) deployment {
	t.Helper()
	const ns = "omen"
	for _, o := range objs {
		if o.kind != "Namespace" && o.kind != "ScaledObject" && o.kind != "HorizontalPodAutoscaler" && !(o.kind == "ConfigMap" && o.namespace != ns) {
			require.Equal(t, ns, o.namespace, "%s %s", o.kind, o.name)
		}
	}
	nsObj := find[*corev1.Namespace](t, objs, "Namespace", ns)
	require.Equal(t, "restricted", nsObj.Labels["pod-security.kubernetes.io/enforce"])

	sts := find[*appsv1.StatefulSet](t, objs, "StatefulSet", "omen")
	pod := sts.Spec.Template
	require.NotNil(t, sts.Spec.Selector)
	require.True(t, subset(sts.Spec.Selector.MatchLabels, pod.Labels), "StatefulSet selector must select its pods")

	// No API access: a ServiceAccount without token, and no RBAC objects
	// (kinds refuses them).
	sa := find[*corev1.ServiceAccount](t, objs, "ServiceAccount", pod.Spec.ServiceAccountName)
	require.NotNil(t, sa.AutomountServiceAccountToken)
	require.False(t, *sa.AutomountServiceAccountToken)
	require.NotNil(t, pod.Spec.AutomountServiceAccountToken)
	require.False(t, *pod.Spec.AutomountServiceAccountToken)

	psc := pod.Spec.SecurityContext
	require.NotNil(t, psc)
	require.True(t, psc.RunAsNonRoot != nil && *psc.RunAsNonRoot)
	require.True(t, psc.RunAsUser != nil && *psc.RunAsUser > 0)
	require.True(t, psc.SeccompProfile != nil && psc.SeccompProfile.Type == corev1.SeccompProfileTypeRuntimeDefault)

	require.Len(t, pod.Spec.Containers, 1)
	c := pod.Spec.Containers[0]
	sc := c.SecurityContext
	require.NotNil(t, sc)
	require.True(t, sc.ReadOnlyRootFilesystem != nil && *sc.ReadOnlyRootFilesystem, "read-only root filesystem")
	require.True(t, sc.AllowPrivilegeEscalation != nil && !*sc.AllowPrivilegeEscalation)
	require.True(t, sc.Capabilities != nil && slices.Contains(sc.Capabilities.Drop, "ALL"))

	repo, tag, ok := strings.Cut(path.Base(c.Image), ":")
	require.True(t, ok && tag != "" && tag != "latest", "image %q must be pinned", c.Image)
	require.Equal(t, "omen", repo)

	ports := map[string]int32{}
	for _, p := range c.Ports {
		ports[p.Name] = p.ContainerPort
	}
	require.Equal(t, int32(9201), ports["http"])
	for probe, want := range map[*corev1.Probe]string{c.StartupProbe: "/-/healthy", c.LivenessProbe: "/-/healthy", c.ReadinessProbe: "/-/ready"} {
		require.NotNil(t, probe)
		require.NotNil(t, probe.HTTPGet)
		require.Equal(t, want, probe.HTTPGet.Path)
		require.Equal(t, "http", probe.HTTPGet.Port.String())
	}
	req := c.Resources.Requests
	require.False(t, req.Cpu().IsZero(), "cpu request")
	require.False(t, req.Memory().IsZero(), "memory request")
	require.GreaterOrEqual(t, c.Resources.Limits.Memory().Cmp(*req.Memory()), 0, "memory limit below request")

	require.Equal(t, "serve", c.Args[0])
	args := map[string][]string{}
	for _, a := range c.Args[1:] {
		k, v, ok := strings.Cut(a, "=")
		require.True(t, ok && strings.HasPrefix(k, "--"), "argument %q: want --flag=value", a)
		args[k] = append(args[k], v)
	}
	_, port, ok := strings.Cut(args["--web.listen-address"][0], ":")
	require.True(t, ok)
	require.Equal(t, strconv.Itoa(int(ports["http"])), port)

	mounts := map[string]corev1.VolumeMount{}
	for _, m := range c.VolumeMounts {
		mounts[m.Name] = m
	}
	// The TSDB lives on the claim of each replica.
	require.Len(t, sts.Spec.VolumeClaimTemplates, 1)
	claim := sts.Spec.VolumeClaimTemplates[0]
	require.Equal(t, args["--storage.tsdb.path"][0], mounts[claim.Name].MountPath)
	size := claim.Spec.Resources.Requests[corev1.ResourceStorage]
	require.Positive(t, size.Cmp(resource.MustParse("1Gi")))

	// Every other writable path is an emptyDir, as the root is read-only.
	var config *omenconfig.Config
	for _, v := range pod.Spec.Volumes {
		m, ok := mounts[v.Name]
		require.True(t, ok, "volume %s not mounted", v.Name)
		switch {
		case v.ConfigMap != nil:
			require.True(t, m.ReadOnly)
			cm := find[*corev1.ConfigMap](t, objs, "ConfigMap", v.ConfigMap.Name)
			file := args["--config.file"][0]
			require.Equal(t, m.MountPath, path.Dir(file), "--config.file must be in the config volume")
			data, ok := cm.Data[path.Base(file)]
			require.True(t, ok, "ConfigMap %s has no %s", cm.Name, path.Base(file))
			var err error
			config, err = omenconfig.Load([]byte(data))
			require.NoError(t, err, "omen configuration in ConfigMap %s", cm.Name)
		case v.EmptyDir != nil:
		default:
			require.Failf(t, "unexpected volume", "%s", v.Name)
		}
	}
	require.NotNil(t, config, "no configuration mounted")

	// Services select the pods and target a named container port; the
	// headless one gives each replica its DNS name.
	for _, svc := range all[*corev1.Service](objs, "Service") {
		require.True(t, subset(svc.Spec.Selector, pod.Labels), "Service %s selects no omen pod", svc.Name)
		for _, p := range svc.Spec.Ports {
			_, ok := ports[p.TargetPort.String()]
			require.True(t, ok, "Service %s targets unknown port %s", svc.Name, p.TargetPort.String())
		}
	}
	headless := find[*corev1.Service](t, objs, "Service", sts.Spec.ServiceName)
	require.Equal(t, corev1.ClusterIPNone, headless.Spec.ClusterIP)
	svc := find[*corev1.Service](t, objs, "Service", "omen")

	pdb := find[*policyv1.PodDisruptionBudget](t, objs, "PodDisruptionBudget", "omen")
	require.True(t, subset(pdb.Spec.Selector.MatchLabels, pod.Labels))

	// Only Prometheus and Grafana (and in the logs overlay Loki) get in.
	np := find[*networkingv1.NetworkPolicy](t, objs, "NetworkPolicy", "omen")
	require.True(t, subset(np.Spec.PodSelector.MatchLabels, pod.Labels))
	require.Equal(t, []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}, np.Spec.PolicyTypes)
	require.Len(t, np.Spec.Ingress, 1)
	in := np.Spec.Ingress[0]
	require.Len(t, in.Ports, 1)
	require.Equal(t, "http", in.Ports[0].Port.String())
	peers := peerApps(np)
	require.Subset(t, peers, []string{"prometheus", "grafana"})
	for _, p := range in.From {
		require.NotNil(t, p.NamespaceSelector, "peers must name their namespace")
		require.NotNil(t, p.PodSelector, "peers must name their pods")
		require.Nil(t, p.IPBlock)
	}

	// The ServiceMonitor scrapes the omen Service with honor_labels and the
	// job the health rules select.
	sm := find[*serviceMonitor](t, objs, "ServiceMonitor", "omen")
	require.True(t, subset(sm.Spec.Selector.MatchLabels, svc.Labels))
	require.Len(t, sm.Spec.Endpoints, 1)
	ep := sm.Spec.Endpoints[0]
	require.True(t, slices.ContainsFunc(svc.Spec.Ports, func(p corev1.ServicePort) bool { return p.Name == ep.Port }))
	require.True(t, ep.HonorLabels)
	require.True(t, slices.ContainsFunc(ep.Relabelings, func(r relabeling) bool {
		return r.TargetLabel == "job" && r.Replacement != nil && *r.Replacement == rules.OmenJob
	}), "ServiceMonitor must set job=%s", rules.OmenJob)
	// Its relabelings, run by Prometheus's own code on the target labels
	// the Operator gives a ServiceMonitor's targets, leave job and
	// instance only: honorLabels fills any label an output lacks from the
	// target, and the Operator's namespace, service, pod, container and
	// endpoint made the alerts' look-up of the input find nothing.
	target := labels.FromStrings("job", "omen", "instance", "10.0.0.7:9091", "namespace", "omen", "service", "omen",
		"pod", "omen-0", "container", "omen", "endpoint", "http")
	lb := labels.NewBuilder(target)
	require.True(t, relabel.ProcessBuilder(lb, relabelConfigs(t, ep.Relabelings)...))
	require.Equal(t, labels.FromStrings("job", rules.OmenJob, "instance", "10.0.0.7:9091", rules.LabelOmenInstance, "omen-0"), lb.Labels())
	checkOmenInstance(t, relabelConfigs(t, ep.MetricRelabelings), "omen-0")

	pr := find[*prometheusRule](t, objs, "PrometheusRule", "omen")
	require.Equal(t, "prometheus", pr.Labels["release"])
	require.Len(t, pr.Spec.Groups, len(baseRules(t).Groups))

	// SIGTERM to exit, at worst, within the pod's grace: Kubernetes'
	// SIGKILL after it loses the final model snapshot, and the TSDB is
	// not closed.
	grace := pod.Spec.TerminationGracePeriodSeconds
	require.NotNil(t, grace, "terminationGracePeriodSeconds: Kubernetes' 30 s default is shorter than a shutdown may take")
	budget := shutdownBudget(t, args, len(args["--remote-write.url"])+len(config.RemoteWrite))
	require.LessOrEqual(t, budget, time.Duration(*grace)*time.Second, "terminationGracePeriodSeconds %d below a worst-case shutdown of %s", *grace, budget)

	return deployment{sts: sts, args: args, config: config, service: svc, netpol: np}
}

// peerApps lists the app.kubernetes.io/name of the NetworkPolicy's peers.
func peerApps(np *networkingv1.NetworkPolicy) []string {
	var out []string
	for _, in := range np.Spec.Ingress {
		for _, p := range in.From {
			if p.PodSelector != nil {
				out = append(out, p.PodSelector.MatchLabels["app.kubernetes.io/name"])
			}
		}
	}
	return out
}

func checkSharded(t *testing.T, _ []object, d deployment) {
	require.Equal(t, int32(shardedReplicas(t)), *d.sts.Spec.Replicas)
	require.Equal(t, appsv1.ParallelPodManagement, d.sts.Spec.PodManagementPolicy)
	urls := d.args["--remote-write.url"]
	require.Len(t, urls, 1, "each shard forwards its output to the global store")
	u, err := url.Parse(urls[0])
	require.NoError(t, err)
	require.Contains(t, []string{"http", "https"}, u.Scheme)
	require.NotEmpty(t, u.Host)
	// The flush deadline is set: Prometheus's default of 1m would take
	// most of the grace for an upstream that is down (checkOmen's budget).
	require.Len(t, d.args["--storage.remote.flush-deadline"], 1)
	// A change of the replica count moves most series to a shard with no
	// history of them (TestReshardingMovesSeries): they warm from the
	// Prometheus that feeds the shards, not cold for 64 samples.
	require.Len(t, d.args["--backfill.remote-read-url"], 1, "moved series warm from the Prometheus that feeds the shards")
	require.Len(t, d.args["--backfill.external-label"], 1)
}

// shutdownBudget is the longest SIGTERM to exit may take under the flags
// in args (their defaults where unset), its steps in turn (cmd/omen's run
// group): requests in flight get --web.shutdown-grace and are then
// cancelled (up to 5 s more); the scorers score what is queued for at most
// --detect.shutdown-drain; the model snapshot is written, or abandoned,
// within --snapshot.shutdown-timeout, and the TSDB closes, or is left to
// the exit, within --storage.tsdb.shutdown-timeout; with
// outputs forwarded to destinations
// remote writes, the queues get up to 5 s to read the log's end, then
// --storage.remote.flush-deadline to send, all destinations
// together (forward's closeQueues: the module stops them in turn, and
// omen waits for one deadline), and the forwarding log's close is waited
// for up to 10 s (forward's closeLogWait, the module's agent DB that can
// deadlock).
func shutdownBudget(t *testing.T, args map[string][]string, destinations int) time.Duration {
	t.Helper()
	flag := func(name string, def time.Duration) time.Duration {
		v := args[name]
		if len(v) == 0 {
			return def
		}
		d, err := model.ParseDuration(v[len(v)-1])
		require.NoError(t, err, name)
		return time.Duration(d)
	}
	// serve.go's default of --web.shutdown-grace.
	b := flag("--web.shutdown-grace", 10*time.Second) + 5*time.Second +
		flag("--detect.shutdown-drain", pipeline.DefaultOptions().ShutdownDrain) +
		flag("--snapshot.shutdown-timeout", pipeline.DefaultOptions().ShutdownSnapshot) +
		flag("--storage.tsdb.shutdown-timeout", tsdb.DefaultShutdownTimeout)
	if destinations > 0 {
		b += 5*time.Second + flag("--storage.remote.flush-deadline", time.Duration(forward.DefaultFlushDeadline)) + 10*time.Second
	}
	return b
}

// selectors returns the vector selectors of a PromQL expression.
func selectors(t *testing.T, expr string) []*parser.VectorSelector {
	t.Helper()
	e, err := parser.NewParser(parser.Options{}).ParseExpr(expr)
	require.NoError(t, err, expr)
	var out []*parser.VectorSelector
	parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
		if vs, ok := n.(*parser.VectorSelector); ok {
			out = append(out, vs)
		}
		return nil
	})
	return out
}

func matcherValue(vs *parser.VectorSelector, name string) string {
	for _, m := range vs.LabelMatchers {
		if m.Name == name {
			return m.Value
		}
	}
	return ""
}

// checkForecastInput checks a forecast selector names a derived input of
// config and one of its horizons.
func checkForecastInput(t *testing.T, config *omenconfig.Config, forName, horizon string) {
	t.Helper()
	i := slices.IndexFunc(config.Derived, func(d omenconfig.Derived) bool { return d.Name == forName })
	require.GreaterOrEqual(t, i, 0, "for=%q is no derived input of the overlay's omen configuration", forName)
	var hs []string
	for _, h := range config.Derived[i].ForecastHorizons {
		hs = append(hs, h.String())
	}
	require.Contains(t, hs, horizon, "horizon %s is not forecast for %s", horizon, forName)
	checkScalerKeepsItsPlace(t, config, &config.Derived[i])
}

// checkScalerKeepsItsPlace: the scaler's derived input takes a place of
// --detect.max-series as the ingested series do, first come, first scored
// (pipeline.TestDerivedSharesBudget), and a forecaster only once scored. A
// cluster's remote write brings its series within its first scrape
// interval, before the input's first evaluation; were they all scored, a
// cluster sending more series than the budget would leave the input
// neither scored nor forecast, and the scaler without its metric
// (scripts/predictive-scaling-budget.sh, the real omen with the base's
// budget of 20 000 and 25 000 series sent: no anomaly_score for it,
// omen_series_forecasting 0; 1 000 series sent: scored, forecasting). So
// the overlay's configuration scores the workload's namespace only, the
// one the input's expression reads: the series every cluster sends from
// other namespaces, or none (kube-state-metrics, cAdvisor, the kubelet,
// node-exporter, the API server), take no place.
func checkScalerKeepsItsPlace(t *testing.T, config *omenconfig.Config, in *omenconfig.Derived) {
	t.Helper()
	var ns string
	for _, vs := range selectors(t, in.Expr) {
		if v := matcherValue(vs, "namespace"); v != "" {
			ns = v
		}
	}
	require.NotEmpty(t, ns, "the derived input %s reads no namespace", in.Name)
	other := ns + "-other"
	for _, ls := range []labels.Labels{
		labels.FromStrings("__name__", "kube_pod_container_status_restarts_total", "job", "kube-state-metrics", "namespace", other, "pod", "p"),
		labels.FromStrings("__name__", "container_cpu_usage_seconds_total", "job", "kubelet", "metrics_path", "/metrics/cadvisor", "namespace", other, "pod", "p"),
		labels.FromStrings("__name__", "kubelet_running_pods", "job", "kubelet", "instance", "10.0.0.1:10250"),
		labels.FromStrings("__name__", "node_cpu_seconds_total", "job", "node-exporter", "instance", "10.0.0.1:9100", "cpu", "0", "mode", "idle"),
		labels.FromStrings("__name__", "apiserver_request_total", "job", "apiserver", "namespace", "default", "verb", "GET"),
	} {
		require.False(t, config.Selected(ls), "%s is scored: series outside namespace %q fill --detect.max-series before %s is first evaluated", ls, ns, in.Name)
	}
	require.True(t, config.Selected(labels.FromStrings("__name__", "http_requests_total", "namespace", ns, "job", "web")), "the workload's own series are scored")
}

func checkKEDA(t *testing.T, objs []object, d deployment) {
	sos := all[*scaledObject](objs, "ScaledObject")
	require.Len(t, sos, 1)
	so := sos[0]
	require.Equal(t, "Deployment", so.Spec.ScaleTargetRef.Kind)
	require.NotEqual(t, "omen", so.Namespace, "a ScaledObject lives beside the Deployment it scales")
	require.Less(t, *so.Spec.MinReplicaCount, *so.Spec.MaxReplicaCount)
	require.Len(t, so.Spec.Triggers, 1)
	tr := so.Spec.Triggers[0]
	require.Equal(t, "prometheus", tr.Type)
	known := []string{"serverAddress", "query", "threshold", "activationThreshold", "ignoreNullValues", "namespace", "unsafeSsl", "customHeaders", "queryParameters"}
	for k := range tr.Metadata {
		require.Contains(t, known, k, "unknown prometheus scaler field")
	}
	u, err := url.Parse(tr.Metadata["serverAddress"])
	require.NoError(t, err)
	require.Equal(t, "http", u.Scheme)
	th, err := strconv.ParseFloat(tr.Metadata["threshold"], 64)
	require.NoError(t, err)
	require.Positive(t, th)
	var forecasts int
	for _, vs := range selectors(t, tr.Metadata["query"]) {
		if vs.Name == "forecast" || vs.Name == "forecast_upper" {
			forecasts++
			checkForecastInput(t, d.config, matcherValue(vs, "for"), matcherValue(vs, "horizon"))
		}
	}
	require.Equal(t, 1, forecasts, "the query scales on one forecast")
	requireCurrentRate(t, d.config, tr.Metadata["query"], so.Namespace, nil)
}

// requireCurrentRate checks a scaler also scales on the current value of
// the input it forecasts: query, with the namespace and the labels the
// scaler adds, selects what the derived input's expression selects, over
// the same range. The 15m forecast lags a ramp's first half hour below
// the current rate (pipeline.BenchmarkScaling: on a morning ramp of
// 500 req/s an hour, the forecast alone was off by 127 on average against
// the current value's 100, and max(forecast, current) by 99), and is
// missing while the model warms up.
func requireCurrentRate(t *testing.T, config *omenconfig.Config, query, ns string, add map[string]string) {
	t.Helper()
	require.Len(t, config.Derived, 1)
	want := rateSelectors(t, config.Derived[0].Expr, "", nil)
	require.NotEmpty(t, want)
	require.Subset(t, rateSelectors(t, query, ns, add), want, "the scaler does not scale on the current rate, %s", config.Derived[0].Expr)
}

// rateSelectors are the range selectors of expr as strings, their
// matchers sorted, with namespace ns and the labels add matched too.
func rateSelectors(t *testing.T, expr, ns string, add map[string]string) []string {
	t.Helper()
	e, err := parser.NewParser(parser.Options{}).ParseExpr(expr)
	require.NoError(t, err, expr)
	var out []string
	parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
		ms, ok := n.(*parser.MatrixSelector)
		if !ok {
			return nil
		}
		vs := ms.VectorSelector.(*parser.VectorSelector)
		var parts []string
		seen := map[string]bool{}
		for _, m := range vs.LabelMatchers {
			seen[m.Name] = true
			parts = append(parts, m.String())
		}
		for k, v := range add {
			if !seen[k] {
				parts = append(parts, k+"=\""+v+"\"")
			}
		}
		if ns != "" && !seen["namespace"] {
			parts = append(parts, `namespace="`+ns+`"`)
		}
		slices.Sort(parts)
		out = append(out, strings.Join(parts, ",")+"["+ms.Range.String()+"]")
		return nil
	})
	return out
}

func checkHPA(t *testing.T, objs []object, d deployment) {
	hpas := all[*autoscalingv2.HorizontalPodAutoscaler](objs, "HorizontalPodAutoscaler")
	require.Len(t, hpas, 1)
	hpa := hpas[0]
	require.Equal(t, "Deployment", hpa.Spec.ScaleTargetRef.Kind)
	require.NotEqual(t, "omen", hpa.Namespace)
	require.Less(t, *hpa.Spec.MinReplicas, hpa.Spec.MaxReplicas)

	cm := find[*corev1.ConfigMap](t, objs, "ConfigMap", "prometheus-adapter-omen")
	var ac adapterConfig
	require.NoError(t, strictYAML([]byte(cm.Data["config.yaml"]), &ac))
	metrics := map[string]string{} // external name -> horizon it serves
	queries := map[string]string{} // external name -> its metricsQuery, not a forecast's
	for _, r := range ac.ExternalRules {
		sel, err := parser.NewParser(parser.Options{}).ParseMetricSelector(r.SeriesQuery)
		require.NoError(t, err, r.SeriesQuery)
		var series, horizon string
		for _, m := range sel {
			switch m.Name {
			case "__name__":
				series = m.Value
			case "horizon":
				horizon = m.Value
			}
		}
		re, err := regexp.Compile(r.Name.Matches)
		require.NoError(t, err)
		require.True(t, re.MatchString(series), "name.matches %s must match %s", r.Name.Matches, series)
		if series != "forecast" && series != "forecast_upper" {
			queries[r.Name.As] = strings.NewReplacer("<<.GroupBy>>", "namespace", "<<.Series>>", series).Replace(r.MetricsQuery)
			continue
		}
		// prometheus-adapter fills the template; parse what it would send.
		q := strings.NewReplacer("<<.GroupBy>>", "namespace", "<<.Series>>", series, "<<.LabelMatchers>>", `namespace="shop",for="x"`).Replace(r.MetricsQuery)
		for _, vs := range selectors(t, q) {
			require.Equal(t, series, vs.Name)
			require.Equal(t, horizon, matcherValue(vs, "horizon"))
		}
		metrics[r.Name.As] = horizon
	}
	var forecasts, current int
	for _, m := range hpa.Spec.Metrics {
		if m.Type != autoscalingv2.ExternalMetricSourceType {
			continue
		}
		require.NotNil(t, m.External.Metric.Selector)
		require.Equal(t, autoscalingv2.AverageValueMetricType, m.External.Target.Type)
		require.False(t, m.External.Target.AverageValue.IsZero())
		if q, ok := queries[m.External.Metric.Name]; ok {
			// The HPA takes the most replicas any metric asks for: with the
			// current rate, max(forecast, current) as KEDA's query.
			current++
			matchers := strings.NewReplacer("<<.LabelMatchers>>", "").Replace(q)
			requireCurrentRate(t, d.config, matchers, hpa.Namespace, m.External.Metric.Selector.MatchLabels)
			continue
		}
		forecasts++
		horizon, ok := metrics[m.External.Metric.Name]
		require.True(t, ok, "external metric %s is not served by prometheus-adapter", m.External.Metric.Name)
		checkForecastInput(t, d.config, m.External.Metric.Selector.MatchLabels["for"], horizon)
	}
	require.Equal(t, 1, forecasts, "the HPA scales on one forecast")
	require.Equal(t, 1, current, "the HPA scales on the current rate too, as KEDA's max(forecast or rate) does")
}

// streamSelector finds the LogQL stream selector of a metric query; its
// syntax is PromQL's series selector without a metric name.
var streamSelector = regexp.MustCompile(`\{[^{}]*\}`)

func checkLogs(t *testing.T, objs []object, d deployment) {
	require.Contains(t, peerApps(d.netpol), "loki", "Loki's ruler must be let in")

	cm := find[*corev1.ConfigMap](t, objs, "ConfigMap", "loki-omen-rules")
	require.Equal(t, "1", cm.Labels["loki_rule"])
	require.Len(t, cm.Data, 1)
	for _, data := range cm.Data {
		var rg lokiRuleGroups
		require.NoError(t, strictYAML([]byte(data), &rg))
		var records []string
		for _, g := range rg.Groups {
			_, err := model.ParseDuration(g.Interval)
			require.NoError(t, err)
			for _, r := range g.Rules {
				require.True(t, model.LegacyValidation.IsValidMetricName(r.Record), "record %q", r.Record)
				records = append(records, r.Record)
				sel := streamSelector.FindString(r.Expr)
				require.NotEmpty(t, sel, "no stream selector in %s", r.Expr)
				_, err := parser.NewParser(parser.Options{}).ParseMetricSelector(sel)
				require.NoError(t, err, "stream selector %s", sel)
				require.Contains(t, r.Expr, "rate(", "a LogQL metric query")
			}
		}
		require.Contains(t, records, "namespace_pod:log_error_lines:rate1m")
		require.Contains(t, records, "namespace:log_error_lines:rate1m")
		checkLogRulesDense(t, rg)
		// omen scores them unless its configuration excludes them.
		for _, rec := range records {
			require.True(t, d.config.Selected(labelsOf(rec)), "%s is excluded by omen's configuration", rec)
		}
	}

	var lr lokiRuler
	require.NoError(t, strictYAML(read(t, "kubernetes/overlays/logs/loki-ruler.yaml"), &lr))
	require.True(t, lr.Ruler.RemoteWrite.Enabled)
	// The ruler reads <directory>/<tenant>/: the sidecar must copy the rules
	// into a tenant's folder below the ruler's directory, not into it.
	dir, tenant := path.Split(cm.Annotations["k8s-sidecar-target-directory"])
	require.Equal(t, path.Clean(lr.Ruler.Storage.Local.Directory), path.Clean(dir), "rules go into a tenant folder of the ruler's directory")
	require.NotEmpty(t, tenant)
	require.Len(t, lr.Ruler.RemoteWrite.Clients, 1)
	for _, c := range lr.Ruler.RemoteWrite.Clients {
		u, err := url.Parse(c.URL)
		require.NoError(t, err)
		want := fmt.Sprintf("%s.%s.svc:%d", d.service.Name, d.service.Namespace, d.service.Spec.Ports[0].Port)
		require.Equal(t, want, u.Host, "Loki must write to omen's Service")
		require.Equal(t, "/api/v1/write", u.Path)
	}
}

// logRange is a LogQL log range of the rules: a stream selector, an
// optional line filter, a range.
var logRange = regexp.MustCompile(`(\{[^{}]*\})\s*(\|~\s*"(?:[^"\\]|\\.)*")?\s*\[(\w+)\]`)

// sumBy is an aggregation's grouping labels.
var sumBy = regexp.MustCompile(`sum by \(([^)]*)\)`)

// checkLogRulesDense evaluates the log rules as PromQL (LogQL's metric
// queries share its aggregation, set and arithmetic operators): each log
// range becomes a counter of its lines, log_lines_total, or with a line
// filter log_error_lines_total, which like a LogQL range without a matching
// line has no series at all for a pod that logs no error. Every rule must
// give every group that logs anything a value, errors or not: a series that
// exists only while errors come is a new series at each burst, never warm
// enough for omen to score.
func checkLogRulesDense(t *testing.T, rg lokiRuleGroups) {
	st := promqltest.LoadedStorage(t, `
load 15s
  log_lines_total{namespace="shop",pod="cart-1"} 0+10x20
  log_error_lines_total{namespace="shop",pod="cart-1"} 0+2x20
  log_lines_total{namespace="shop",pod="web-1"} 0+10x20
  log_lines_total{namespace="batch",pod="job-1"} 0+5x20
`)
	engine := promqltest.NewTestEngine(t, false, 5*time.Minute, 1e6)
	at := time.Unix(240, 0)
	groups := func(expr string) map[string]float64 {
		qr, err := engine.NewInstantQuery(t.Context(), st, nil, expr, at)
		require.NoError(t, err, expr)
		res := qr.Exec(t.Context())
		require.NoError(t, res.Err, expr)
		vec, err := res.Vector()
		require.NoError(t, err)
		out := map[string]float64{}
		for _, s := range vec {
			out[s.Metric.String()] = s.F
		}
		return out
	}
	for _, g := range rg.Groups {
		for _, r := range g.Rules {
			expr := logRange.ReplaceAllStringFunc(r.Expr, func(m string) string {
				sub := logRange.FindStringSubmatch(m)
				name := "log_lines_total"
				if sub[2] != "" {
					name = "log_error_lines_total"
				}
				return name + sub[1] + "[" + sub[3] + "]"
			})
			require.NotContains(t, expr, "|", "a LogQL construct left in %s", expr)
			by := sumBy.FindStringSubmatch(r.Expr)
			require.NotNil(t, by, "rule %s aggregates by some labels", r.Record)
			got := groups(expr)
			want := groups(fmt.Sprintf("sum by (%s) (log_lines_total)", by[1]))
			require.Len(t, want, map[string]int{"namespace": 2, "namespace, pod": 3}[by[1]])
			for k := range want {
				require.Contains(t, got, k, "%s has no value for %s, which logs", r.Record, k)
			}
			require.Len(t, got, len(want), r.Record)
			if strings.Contains(r.Record, "error") {
				require.Positive(t, got[`{namespace="shop", pod="cart-1"}`]+got[`{namespace="shop"}`], "%s sees the errors", r.Record)
				require.Zero(t, got[`{namespace="batch"}`]+got[`{namespace="batch", pod="job-1"}`], "%s: no error in batch", r.Record)
			}
		}
	}
}

func checkGrafanaConfigMaps(t *testing.T, objs []object) {
	files, err := filepath.Glob("grafana/dashboards/*.json")
	require.NoError(t, err)
	require.Len(t, objs, len(files), "one ConfigMap per dashboard")
	for _, f := range files {
		found := false
		for _, cm := range all[*corev1.ConfigMap](objs, "ConfigMap") {
			if data, ok := cm.Data[filepath.Base(f)]; ok {
				found = true
				require.Equal(t, string(read(t, f)), data)
				require.Equal(t, "1", cm.Labels["grafana_dashboard"])
				require.Equal(t, "monitoring", cm.Namespace)
			}
		}
		require.True(t, found, "%s is in no ConfigMap", f)
	}
}

// labelsOf is the label set of a series with only a metric name.
func labelsOf(name string) labels.Labels { return labels.FromStrings(model.MetricNameLabel, name) }

// relabelConfigs turns a ServiceMonitor's relabelings into Prometheus's, as
// the Operator writes them into the scrape configuration.
func relabelConfigs(t *testing.T, rs []relabeling) []*relabel.Config {
	t.Helper()
	var out []*relabel.Config
	for _, r := range rs {
		c := relabel.DefaultRelabelConfig
		c.NameValidationScheme = model.UTF8Validation
		if r.Action != "" {
			c.Action = relabel.Action(strings.ToLower(r.Action))
		}
		if r.Regex != "" {
			c.Regex = relabel.MustNewRegexp(r.Regex)
		}
		if r.Replacement != nil {
			c.Replacement = *r.Replacement
		}
		if r.Separator != "" {
			c.Separator = r.Separator
		}
		c.TargetLabel, c.Modulus = r.TargetLabel, r.Modulus
		for _, l := range r.SourceLabels {
			c.SourceLabels = append(c.SourceLabels, model.LabelName(l))
		}
		require.NoError(t, c.Validate(model.UTF8Validation))
		out = append(out, &c)
	}
	return out
}
