package deploy

// The custom resources omen ships, mirrored from their projects' API types
// for strict decoding: a field not listed here fails the test, so a typo or
// a field the CRD does not have is caught. Only the fields of the upstream
// CRDs that omen's manifests may use are listed; each type names its source.

import (
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// serviceMonitor mirrors monitoring.coreos.com/v1 ServiceMonitor
// (prometheus-operator pkg/apis/monitoring/v1/servicemonitor_types.go).
type serviceMonitor struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		JobLabel          string               `json:"jobLabel,omitempty"`
		Selector          metav1.LabelSelector `json:"selector"`
		NamespaceSelector *struct {
			Any        bool     `json:"any,omitempty"`
			MatchNames []string `json:"matchNames,omitempty"`
		} `json:"namespaceSelector,omitempty"`
		Endpoints []struct {
			Port          string       `json:"port,omitempty"`
			Path          string       `json:"path,omitempty"`
			Scheme        string       `json:"scheme,omitempty"`
			Interval      string       `json:"interval,omitempty"`
			ScrapeTimeout string       `json:"scrapeTimeout,omitempty"`
			HonorLabels   bool         `json:"honorLabels,omitempty"`
			Relabelings   []relabeling `json:"relabelings,omitempty"`
			// MetricRelabelings are the scrape's metric_relabel_configs.
			MetricRelabelings []relabeling `json:"metricRelabelings,omitempty"`
		} `json:"endpoints"`
	} `json:"spec"`
}

// relabeling mirrors monitoring.coreos.com/v1 RelabelConfig.
type relabeling struct {
	SourceLabels []string `json:"sourceLabels,omitempty"`
	Separator    string   `json:"separator,omitempty"`
	TargetLabel  string   `json:"targetLabel,omitempty"`
	Regex        string   `json:"regex,omitempty"`
	Modulus      uint64   `json:"modulus,omitempty"`
	Replacement  *string  `json:"replacement,omitempty"`
	Action       string   `json:"action,omitempty"`
}

// prometheusRule mirrors monitoring.coreos.com/v1 PrometheusRule
// (prometheusrule_types.go); its groups are Prometheus's rule groups.
type prometheusRule struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		Groups []struct {
			Name     string `json:"name"`
			Interval string `json:"interval,omitempty"`
			Rules    []struct {
				Record string `json:"record,omitempty"`
				Alert  string `json:"alert,omitempty"`
				Expr   string `json:"expr"`
				For    string `json:"for,omitempty"`
				// keep_firing_for: since prometheus-operator v0.65.
				KeepFiringFor string            `json:"keep_firing_for,omitempty"`
				Labels        map[string]string `json:"labels,omitempty"`
				Annotations   map[string]string `json:"annotations,omitempty"`
			} `json:"rules"`
		} `json:"groups"`
	} `json:"spec"`
}

// scaledObject mirrors keda.sh/v1alpha1 ScaledObject
// (kedacore/keda apis/keda/v1alpha1/scaledobject_types.go).
type scaledObject struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		ScaleTargetRef struct {
			APIVersion string `json:"apiVersion,omitempty"`
			Kind       string `json:"kind,omitempty"`
			Name       string `json:"name"`
		} `json:"scaleTargetRef"`
		PollingInterval *int32 `json:"pollingInterval,omitempty"`
		CooldownPeriod  *int32 `json:"cooldownPeriod,omitempty"`
		MinReplicaCount *int32 `json:"minReplicaCount,omitempty"`
		MaxReplicaCount *int32 `json:"maxReplicaCount,omitempty"`
		Advanced        *struct {
			HorizontalPodAutoscalerConfig *struct {
				Name     string                                         `json:"name,omitempty"`
				Behavior *autoscalingv2.HorizontalPodAutoscalerBehavior `json:"behavior,omitempty"`
			} `json:"horizontalPodAutoscalerConfig,omitempty"`
		} `json:"advanced,omitempty"`
		Triggers []struct {
			Type       string            `json:"type"`
			Name       string            `json:"name,omitempty"`
			MetricType string            `json:"metricType,omitempty"`
			Metadata   map[string]string `json:"metadata"`
		} `json:"triggers"`
	} `json:"spec"`
}

// adapterConfig mirrors prometheus-adapter's configuration file
// (kubernetes-sigs/prometheus-adapter pkg/config/config.go), external rules.
type adapterConfig struct {
	ExternalRules []struct {
		SeriesQuery string `json:"seriesQuery"`
		Resources   struct {
			Template  string `json:"template,omitempty"`
			Overrides map[string]struct {
				Group    string `json:"group,omitempty"`
				Resource string `json:"resource"`
			} `json:"overrides,omitempty"`
			Namespaced *bool `json:"namespaced,omitempty"`
		} `json:"resources"`
		Name struct {
			Matches string `json:"matches"`
			As      string `json:"as"`
		} `json:"name"`
		MetricsQuery string `json:"metricsQuery"`
	} `json:"externalRules"`
}

// lokiRuler mirrors the part of Loki's configuration loki-ruler.yaml sets
// (grafana/loki pkg/ruler/config.go and base/config.go).
type lokiRuler struct {
	Ruler struct {
		EnableAPI          bool   `json:"enable_api"`
		EvaluationInterval string `json:"evaluation_interval"`
		Storage            struct {
			Type  string `json:"type"`
			Local struct {
				Directory string `json:"directory"`
			} `json:"local"`
		} `json:"storage"`
		RulePath string `json:"rule_path"`
		WAL      struct {
			Dir string `json:"dir"`
		} `json:"wal"`
		RemoteWrite struct {
			Enabled bool `json:"enabled"`
			Clients map[string]struct {
				URL           string `json:"url"`
				RemoteTimeout string `json:"remote_timeout"`
				QueueConfig   struct {
					Capacity          int    `json:"capacity"`
					MaxShards         int    `json:"max_shards"`
					MaxSamplesPerSend int    `json:"max_samples_per_send"`
					BatchSendDeadline string `json:"batch_send_deadline"`
				} `json:"queue_config"`
			} `json:"clients"`
		} `json:"remote_write"`
	} `json:"ruler"`
}

// lokiRuleGroups is Loki's rule file: Prometheus's format with LogQL
// expressions, which rulefmt cannot parse as PromQL.
type lokiRuleGroups struct {
	Groups []struct {
		Name     string `json:"name"`
		Interval string `json:"interval"`
		Rules    []struct {
			Record string            `json:"record"`
			Expr   string            `json:"expr"`
			Labels map[string]string `json:"labels,omitempty"`
		} `json:"rules"`
	} `json:"groups"`
}
