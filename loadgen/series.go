package loadgen

import (
	"fmt"
	"hash/fnv"
	"sort"
)

// label is one name/value pair of a generated series.
type label struct{ name, value string }

// dim is a family-specific label and the values it cycles through.
type dim struct {
	name   string
	values []string
}

// family is one metric name with its type, job and extra label dimensions,
// shaped after what node_exporter, cAdvisor, kube-state-metrics and
// instrumented services expose.
type family struct {
	name    string
	counter bool
	job     string
	k8s     bool // carries container, namespace and pod
	dims    []dim
}

var (
	methods  = []string{"GET", "POST", "PUT", "DELETE"}
	handlers = []string{"/api/v1/orders", "/api/v1/users", "/api/v1/cart", "/api/v1/search", "/healthz", "/metrics", "/login", "/checkout"}
)

// families is static data (a catalogue, not state). Base labels: __name__,
// cluster, env, instance, job, region for node families (6) and __name__,
// cluster, container, instance, job, namespace, pod for Kubernetes ones (7);
// dims add 0 to 3, so every series has 6 to 10 labels. 7 counters, 5 gauges.
var families = []family{
	{name: "node_cpu_seconds_total", counter: true, job: "node", dims: []dim{
		{"cpu", []string{"0", "1", "2", "3", "4", "5", "6", "7"}},
		{"mode", []string{"idle", "iowait", "irq", "nice", "softirq", "steal", "system", "user"}}}},
	{name: "node_memory_MemAvailable_bytes", job: "node"},
	{name: "node_filesystem_avail_bytes", job: "node", dims: []dim{
		{"device", []string{"/dev/sda1", "/dev/sdb1", "/dev/nvme0n1p1", "/dev/nvme1n1p1"}},
		{"fstype", []string{"ext4", "xfs"}}}},
	{name: "node_network_receive_bytes_total", counter: true, job: "node", dims: []dim{
		{"device", []string{"eth0", "eth1", "lo", "docker0"}}}},
	{name: "http_requests_total", counter: true, job: "api", k8s: true, dims: []dim{
		{"code", []string{"200", "201", "204", "400", "404", "500"}},
		{"handler", handlers},
		{"method", methods}}},
	{name: "http_request_duration_seconds_sum", counter: true, job: "api", k8s: true, dims: []dim{
		{"handler", handlers},
		{"method", methods}}},
	{name: "process_resident_memory_bytes", job: "api", k8s: true},
	{name: "go_goroutines", job: "api", k8s: true},
	{name: "container_cpu_usage_seconds_total", counter: true, job: "cadvisor", k8s: true},
	{name: "kube_pod_container_status_restarts_total", counter: true, job: "kube-state-metrics", k8s: true},
	{name: "grpc_server_handled_total", counter: true, job: "grpc", k8s: true, dims: []dim{
		{"grpc_code", []string{"OK", "Canceled", "NotFound", "Internal", "Unavailable"}},
		{"grpc_method", []string{"Get", "List", "Create", "Update", "Delete", "Watch"}},
		{"grpc_service", []string{"orders.v1.Orders", "users.v1.Users", "billing.v1.Billing"}}}},
	{name: "jobs_queue_length", job: "worker", k8s: true, dims: []dim{
		{"queue", []string{"email", "sms", "push", "billing", "export", "import", "thumbnails", "reports", "webhooks", "cleanup", "audit", "search-index"}}}},
}

// seriesLabels returns the sorted label set of series i (0-based) and
// whether it is a counter. Distinct i give distinct label sets: i picks the
// family (i mod len(families)), then the rest is a mixed-radix number whose
// low digits are the family's dims and whose high part is the target, which
// sets instance (unique per target) and the labels derived from it.
func seriesLabels(i int) ([]label, bool) {
	f := &families[i%len(families)]
	q := i / len(families)
	ls := make([]label, 0, 10)
	for _, d := range f.dims {
		ls = append(ls, label{d.name, d.values[q%len(d.values)]})
		q /= len(d.values)
	}
	target := q
	h := fnv.New32a()
	fmt.Fprintf(h, "%s/%d", f.job, target)
	hv := h.Sum32()
	ls = append(ls,
		label{"__name__", f.name},
		label{"cluster", fmt.Sprintf("prod-%s-%d", []string{"eu", "us", "ap"}[target%3], target%4)},
		label{"job", f.job},
	)
	if f.k8s {
		ls = append(ls,
			label{"instance", fmt.Sprintf("10.%d.%d.%d:8080", 1+target>>16&0xff, target>>8&0xff, target&0xff)},
			label{"container", f.job},
			label{"namespace", fmt.Sprintf("team-%02d", target%37)},
			label{"pod", fmt.Sprintf("%s-%08x-%05x", f.job, hv, target&0xfffff)},
		)
	} else {
		ls = append(ls,
			label{"instance", fmt.Sprintf("10.%d.%d.%d:9100", 128+target>>16&0x7f, target>>8&0xff, target&0xff)},
			label{"env", []string{"prod", "staging"}[hv%2]},
			label{"region", fmt.Sprintf("region-%d", hv%5)},
		)
	}
	sort.Slice(ls, func(a, b int) bool { return ls[a].name < ls[b].name })
	return ls, f.counter
}

// SeriesLabels returns series i's sorted labels as name, value pairs, so
// that benchmarks elsewhere (tsdb's) decode and append the same series the
// generator sends.
func SeriesLabels(i int) []string {
	ls, _ := seriesLabels(i)
	out := make([]string, 0, 2*len(ls))
	for _, l := range ls {
		out = append(out, l.name, l.value)
	}
	return out
}
