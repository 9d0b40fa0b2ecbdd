package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/alecthomas/kingpin/v2"
	"github.com/alecthomas/units"
	"github.com/oklog/run"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	versioncollector "github.com/prometheus/client_golang/prometheus/collectors/version"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"github.com/prometheus/common/model"
	"github.com/prometheus/common/version"
	promconfig "github.com/prometheus/prometheus/config"
	"github.com/prometheus/prometheus/model/metadata"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb/fileutil"
	"github.com/prometheus/prometheus/util/compression"
	promfeatures "github.com/prometheus/prometheus/util/features"

	"github.com/omen-sidecar/omen/config"
	"github.com/omen-sidecar/omen/forward"
	"github.com/omen-sidecar/omen/internal/memrelease"
	"github.com/omen-sidecar/omen/pipeline"
	"github.com/omen-sidecar/omen/server"
	"github.com/omen-sidecar/omen/tsdb"
	omenweb "github.com/omen-sidecar/omen/web"
)

type serveFlags struct {
	listen        []string
	externalURL   string
	routePrefix   string
	webConfig     string
	maxConns      int
	maxNotesSubs  int
	maxReqBytes   units.Base2Bytes
	readTimeout   model.Duration
	lookbackDelta model.Duration
	corsOrigin    string
	configFile    string
	tsdbPath      string
	retentionTime model.Duration
	retentionSize units.Base2Bytes
	oooWindow     model.Duration
	isolation     bool
	walCompress   bool
	walCompType   string
	features      []string
	// flagValues reads every flag's value once the command line is parsed,
	// for /api/v1/status/flags.
	flagValues      func() map[string]string
	queryTimeout    model.Duration
	maxSamples      int
	maxConcurrency  int
	readSamples     int
	readConcurrent  int
	readFrameBytes  int
	shutdownGrace   time.Duration
	tsdbShutdown    time.Duration
	enableAdmin     bool
	enableLifecycle bool
	write           tsdb.WriteOptions
	maxInflightB    units.Base2Bytes
	pipeline        *pipeline.Options
	runtime         *runtimeFlags
	remoteWrite     []string
	flushDeadline   model.Duration
}

func registerServe(app *kingpin.Application, lc *logConfig) command {
	cl := app.Command("serve", "Run the sidecar: receive remote write, store, score, forecast and serve.").Default()
	f := &serveFlags{}
	cl.Flag("web.listen-address", "Address to listen on for remote write, the API, the UI and /metrics. Repeatable.").
		Default(":9201").StringsVar(&f.listen)
	cl.Flag("web.external-url", "The URL under which omen is externally reachable (for example, if omen is served via a reverse proxy or an ingress), as in Prometheus. If the URL has a path portion, it will be used to prefix all HTTP endpoints served by omen (remote write at <path>/api/v1/write). If omitted: http(s)://<hostname>:<port of the first --web.listen-address>.").
		PlaceHolder("<URL>").StringVar(&f.externalURL)
	cl.Flag("web.route-prefix", "Prefix for the internal routes of web endpoints (as in Prometheus): every endpoint is served under it, and / redirects to it. Defaults to path of --web.external-url; / for a proxy that strips the path.").
		PlaceHolder("<path>").StringVar(&f.routePrefix)
	cl.Flag("web.config.file", "Path to a web configuration file (exporter-toolkit format) enabling TLS or authentication.").
		Default("").StringVar(&f.webConfig)
	cl.Flag("web.max-connections", "Maximum number of simultaneous connections across all listeners (as in Prometheus); 0: no limit.").
		Default("512").IntVar(&f.maxConns)
	cl.Flag("web.max-notifications-subscribers", "Maximum number of /api/v1/notifications/live streams open at once (as in Prometheus 3); past it a subscription is answered 204. Each holds one of --web.max-connections while open.").
		Default("16").IntVar(&f.maxNotesSubs)
	cl.Flag("web.read-timeout", "Maximum duration before timing out read of the request, and closing idle connections (as in Prometheus).").
		Default("5m").SetValue(&f.readTimeout)
	cl.Flag("web.max-request-bytes", "Largest compressed remote-write request accepted; larger ones get 413.").
		Default("32MiB").BytesVar(&f.maxReqBytes)
	cl.Flag("config.file", "omen configuration file (YAML). Re-read on SIGHUP, and on POST /-/reload with --web.enable-lifecycle.").
		Default("").StringVar(&f.configFile)
	cl.Flag("storage.tsdb.path", "Base path for the embedded TSDB and model state.").
		Default("data/").StringVar(&f.tsdbPath)
	cl.Flag("storage.tsdb.retention.time", "How long to retain samples in storage; 0 with --storage.tsdb.retention.size: no time limit, the size alone (as in Prometheus).").
		Default("15d").SetValue(&f.retentionTime)
	cl.Flag("storage.tsdb.retention.size", "Maximum number of bytes of storage to retain: blocks, WAL and head chunks; the oldest blocks are deleted beyond it (0: unlimited). Units: KB, MB, GB, ...").
		Default("0").BytesVar(&f.retentionSize)
	cl.Flag("storage.tsdb.out-of-order-time-window", "How far back out-of-order samples are still accepted (0: none).").
		Default("0s").SetValue(&f.oooWindow)
	cl.Flag("storage.tsdb.isolation", "Make queries see each remote-write request's samples all or none. Off by default: a request is not a unit Prometheus's sender preserves, and isolation costs memory per series and a lock per append.").
		Default("false").BoolVar(&f.isolation)
	cl.Flag("storage.tsdb.wal-compression", "Compress the TSDB's WAL (as in Prometheus, on by default): about half the bytes written to disk. If false, --storage.tsdb.wal-compression-type is ignored.").
		Default("true").BoolVar(&f.walCompress)
	cl.Flag("storage.tsdb.wal-compression-type", "Compression algorithm for the TSDB's WAL, used when --storage.tsdb.wal-compression is true.").
		Default(compression.Snappy).EnumVar(&f.walCompType, compression.Snappy, compression.Zstd)
	cl.Flag("enable-feature", "Comma separated feature names to enable, as in Prometheus. Repeatable. Valid options: "+strings.Join(knownFeatures, ", ")+".").
		PlaceHolder("<name>").StringsVar(&f.features)
	cl.Flag("query.timeout", "Maximum time a query may take before being aborted.").
		Default("2m").SetValue(&f.queryTimeout)
	cl.Flag("query.lookback-delta", "The maximum lookback duration for retrieving metrics during expression evaluations and federation.").
		Default("5m").SetValue(&f.lookbackDelta)
	cl.Flag("web.cors.origin", `Regex for CORS origin. It is fully anchored. Example: 'https?://(domain1|domain2)\.com'`).
		Default(".*").StringVar(&f.corsOrigin)
	cl.Flag("query.max-samples", "Maximum number of samples a single query can load into memory.").
		Default("50000000").IntVar(&f.maxSamples)
	cl.Flag("storage.remote.read-sample-limit", "Maximum overall number of samples to return via the remote read interface, in a single query (0: no limit). Ignored for streamed response types.").
		Default("50000000").IntVar(&f.readSamples)
	cl.Flag("storage.remote.read-concurrent-limit", "Maximum number of concurrent remote read calls (0: no limit).").
		Default("10").IntVar(&f.readConcurrent)
	cl.Flag("storage.remote.read-max-bytes-in-frame", "Maximum number of bytes in a single frame for streaming remote read response types before marshalling. Note that the client might have a limit on frame size as well; 1MB is the default.").
		Default("1048576").IntVar(&f.readFrameBytes)
	cl.Flag("query.max-concurrency", "Maximum number of queries executed concurrently (the API's and the derived inputs' evaluations); more wait for a slot until their timeout.").
		Default("20").IntVar(&f.maxConcurrency)
	cl.Flag("web.enable-lifecycle", "Enable shutdown and reload via HTTP requests (POST or PUT /-/quit, /-/reload), as in Prometheus; SIGHUP always reloads.").
		Default("false").BoolVar(&f.enableLifecycle)
	cl.Flag("web.enable-admin-api", "Enable Prometheus's admin endpoints: TSDB snapshot (for backups), series deletion and tombstone cleanup under /api/v1/admin/tsdb/.").
		Default("false").BoolVar(&f.enableAdmin)
	cl.Flag("web.shutdown-grace", "How long in-flight requests get to finish on shutdown.").
		Default("10s").DurationVar(&f.shutdownGrace)
	cl.Flag("storage.tsdb.shutdown-timeout", "How long the TSDB's close may take at shutdown, the last step (a compaction under way is cancelled first); past it omen exits, and the next start replays the WAL, which holds every sample acknowledged.").
		Default(tsdb.DefaultShutdownTimeout.String()).DurationVar(&f.tsdbShutdown)
	d := tsdb.DefaultWriteOptions()
	cl.Flag("write.max-inflight-requests", "Remote-write requests decoded and appended at once (a request takes its slot once its body is in); beyond it omen answers 503 with Retry-After, which Prometheus retries.").
		Default(fmt.Sprint(d.MaxInflightRequests)).IntVar(&f.write.MaxInflightRequests)
	cl.Flag("write.max-inflight-bytes", "Remote-write bytes in flight: bodies as they arrive and their decoded size; beyond it, 503 with Retry-After.").
		Default("256MiB").BytesVar(&f.maxInflightB)
	cl.Flag("write.max-series-per-request", "Series one remote-write request may carry (400 beyond).").
		Default(fmt.Sprint(d.MaxSeriesPerRequest)).IntVar(&f.write.MaxSeriesPerRequest)
	cl.Flag("write.max-head-series", "Series the TSDB's head may hold (omen_tsdb_head_series: the series written to omen, plus 4 outputs per scored series and 9 per forecast one; size it as inputs + 4 × scored + 9 × forecast) before remote write refuses new series: 400 naming the limit, counted in omen_remote_write_series_refused_total; samples of the series it holds are still stored, and room comes back as the head drops series that stopped. omen's outputs are never refused: those of inputs admitted below the limit take the head past it, counted in omen_tsdb_head_series_created_over_limit_total. Bounds the memory a label explosion upstream takes (~1 KB of heap per head series) instead of an OOM kill. 0: no bound, as in Prometheus: omen cannot know the memory it is given, and a bound below a deployment's head would refuse its data; size it from docs/deploy.md (Series limit).").
		Default("0").IntVar(&f.write.MaxHeadSeries)
	cl.Flag("write.max-labels-per-series", "Labels one series may have (400 beyond).").
		Default(fmt.Sprint(d.Labels.MaxLabels)).IntVar(&f.write.Labels.MaxLabels)
	cl.Flag("write.max-label-name-length", "Bytes of one label name (400 beyond).").
		Default(fmt.Sprint(d.Labels.MaxNameLength)).IntVar(&f.write.Labels.MaxNameLength)
	cl.Flag("write.max-label-value-length", "Bytes of one label value (400 beyond).").
		Default(fmt.Sprint(d.Labels.MaxValueLength)).IntVar(&f.write.Labels.MaxValueLength)
	dha := tsdb.DefaultHAOptions()
	cl.Flag("write.ha-replica-label", "De-duplicate HA pairs of Prometheus, as Mimir's HA tracker does: the external label that tells the replicas apart (prometheus_replica with the Prometheus Operator, __replica__ in Mimir's docs). Of each cluster one replica's series are stored, without this label; the others' are dropped (202 for a request of nothing else). Empty: off.").
		StringVar(&f.write.HA.ReplicaLabel)
	cl.Flag("write.ha-cluster-label", "The external label the replicas of one HA cluster share (prometheus with the Prometheus Operator). A series without it, or without the replica label, is stored as sent.").
		Default(dha.ClusterLabel).StringVar(&f.write.HA.ClusterLabel)
	cl.Flag("write.ha-strip-cluster-label", "Store the elected replica's series without the cluster label too, so omen's outputs carry the labels the series have in Prometheus (for one HA pair whose cluster label no target has).").
		Default("false").BoolVar(&f.write.HA.StripClusterLabel)
	cl.Flag("write.ha-failover-timeout", "How long a cluster's elected replica may send nothing before the next replica to send is elected.").
		Default(dha.FailoverTimeout.String()).DurationVar(&f.write.HA.FailoverTimeout)
	cl.Flag("write.ha-max-clusters", "HA clusters tracked; the series of one more are refused (400) until a cluster has sent nothing for an hour.").
		Default(fmt.Sprint(dha.MaxClusters)).IntVar(&f.write.HA.MaxClusters)
	cl.Flag("remote-write.url", "Remote-write the outputs to this URL too (Thanos Receive, Mimir, VictoriaMetrics), with Prometheus's remote_write defaults; the configuration file's remote_write takes every setting. Repeatable.").
		StringsVar(&f.remoteWrite)
	cl.Flag("storage.remote.flush-deadline", "How long to keep sending the outputs still queued for remote write at shutdown, for all destinations together (or the queues' longest batch_send_deadline if longer; a queue whose turn has not come by then keeps sending meanwhile, and drops what it still holds).").
		Default(forward.DefaultFlushDeadline.String()).SetValue(&f.flushDeadline)
	f.pipeline = pipelineFlags(cl)
	f.flagValues = func() map[string]string { return flagValues(app.Model().Flags, cl.Model().Flags) }
	f.runtime = registerRuntimeFlags(cl)
	return command{clause: cl, run: func(ctx context.Context) error { return runServe(ctx, lc.logger(), f) }}
}

func runServe(ctx context.Context, logger *slog.Logger, f *serveFlags) error {
	// SIGHUP is caught from the start to the end: its default action
	// kills the process, and a SIGHUP (logrotate, config management)
	// during the startup's replays or the shutdown's snapshot and flush
	// did (exit 129, the TSDB not closed, the final snapshot lost). One
	// that comes before the reloader runs is a reload then; during the
	// shutdown, none.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	if err := f.validate(); err != nil {
		return err
	}
	logger.Info("Starting omen", "version", version.Info())
	logger.Info("Build context", "build_context", version.BuildContext())
	if err := f.runtime.apply(logger); err != nil {
		return err
	}
	features, err := parseFeatures(f.features)
	if err != nil {
		return err
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		versioncollector.NewCollector("omen"),
	)

	cfgLoader, err := server.NewConfigLoader(logger, reg, f.configFile)
	if err != nil {
		return badConfigError{err}
	}
	mux := server.NewMux(reg)
	// The web configuration and the listen addresses fail the start at
	// once, before the WAL replays (the TSDB's and the forwarding log's),
	// as in Prometheus; nothing is served before the run group starts.
	// ReadTimeout bounds a whole request (and, with no IdleTimeout, an
	// idle keep-alive): a client that opens connections and sends nothing
	// holds no slot for long.
	inflight := server.NewInflight()
	srv := &http.Server{Handler: inflight.Wrap(mux), BaseContext: inflight.BaseContext, ReadHeaderTimeout: 30 * time.Second, ReadTimeout: time.Duration(f.readTimeout)}
	listeners, err := server.Listen(logger, reg, srv, f.listen, f.webConfig, f.maxConns)
	if err != nil {
		return err
	}
	serving := false
	defer func() {
		if !serving {
			listeners.Close()
		}
	}()
	// Every route under the prefix, as in Prometheus. Outside the web
	// configuration's basic auth and rate limit, which see the paths below
	// it: <prefix>/-/healthy is the one without credentials. Nothing is
	// served yet. Neither flag given, omen serves at / and needs no
	// external URL (nor the hostname its default reads).
	if f.externalURL != "" || f.routePrefix != "" {
		externalURL, err := server.ExternalURL(f.externalURL, f.listen[0], listeners.TLS(), server.DefaultHostname)
		if err != nil {
			return err
		}
		prefix := server.RoutePrefix(f.routePrefix, externalURL)
		// The redirects lead where clients reach omen: under the external
		// URL's path, which a proxy that strips it (--web.route-prefix=/)
		// never forwards; with the route prefix alone, under the prefix.
		redirects := strings.TrimSuffix(prefix, "/")
		if f.externalURL != "" {
			redirects = externalURL.EscapedPath()
		}
		if prefix != "/" || redirects != "" {
			logger.Info("Router prefix", "prefix", prefix, "external_url", externalURL.Redacted())
			srv.Handler = server.WithRoutePrefix(prefix, redirects, srv.Handler)
		}
	}
	store := tsdb.NewStorage(logger, reg, tsdb.Options{
		Path:                 f.tsdbPath,
		RetentionTime:        time.Duration(f.retentionTime),
		RetentionSize:        int64(f.retentionSize),
		OutOfOrderTimeWindow: time.Duration(f.oooWindow),
		Isolation:            f.isolation,
		WALCompression:       walCompression(f.walCompress, f.walCompType),
		// Prometheus's name: remote-write 2.0 calls it the start timestamp.
		StartTimestampZeroIngestion: features[featureSTZeroIngestion],
		MaxExemplars:                tsdb.DefaultOptions().MaxExemplars,
		// Counted only: remote write enforces it (f.write).
		MaxHeadSeries: f.write.MaxHeadSeries,
	})
	promauto.With(reg).NewGaugeFunc(prometheus.GaugeOpts{
		Name: "omen_tsdb_head_series", Help: "Series in the embedded TSDB's head block.",
	}, func() float64 { return float64(store.HeadSeries()) })

	apiOpts := tsdb.DefaultAPIOptions()
	apiOpts.QueryTimeout = time.Duration(f.queryTimeout)
	apiOpts.MaxSamples = f.maxSamples
	apiOpts.LookbackDelta = time.Duration(f.lookbackDelta)
	if apiOpts.CORSOrigin, err = tsdb.CompileCORSOrigin(f.corsOrigin); err != nil {
		return err
	}
	apiOpts.ListenAddress = f.listen[0]
	apiOpts.Flags = f.flagValues()
	apiOpts.EnableAdmin = f.enableAdmin
	apiOpts.Reloaded = cfgLoader.Reloaded
	apiOpts.RetentionSize = int64(f.retentionSize)
	// The live notification streams end as the server's shutdown starts,
	// which else waits its grace for each.
	streamsDone := make(chan struct{})
	srv.RegisterOnShutdown(sync.OnceFunc(func() { close(streamsDone) }))
	apiOpts.StreamsDone = streamsDone
	apiOpts.MaxNotificationsSubscribers = f.maxNotesSubs
	if f.readSamples < 0 || f.readConcurrent < 0 || f.readFrameBytes < 1 {
		return errors.New("--storage.remote.read-sample-limit and --storage.remote.read-concurrent-limit: want 0 (no limit) or more; --storage.remote.read-max-bytes-in-frame: want at least 1")
	}
	apiOpts.RemoteReadSamples, apiOpts.MaxConcurrent, apiOpts.RemoteReadMaxBytes = f.readSamples, f.readConcurrent, f.readFrameBytes
	// The TSDB locks the directory only once it opens, in the run group
	// below; the query tracker rewrites queries.active in it now. A second
	// omen on the same directory truncated the first's mapped file (it
	// died of SIGBUS at its next query) before failing on that lock.
	if err := os.MkdirAll(f.tsdbPath, 0o777); err != nil {
		return fmt.Errorf("create --storage.tsdb.path: %w", err)
	}
	dirLock, _, err := fileutil.Flock(filepath.Join(f.tsdbPath, "omen.lock"))
	if errors.Is(err, syscall.EWOULDBLOCK) {
		return fmt.Errorf("lock --storage.tsdb.path %s: another omen uses it: %w", f.tsdbPath, err)
	} else if err != nil {
		return fmt.Errorf("lock --storage.tsdb.path %s: %w", f.tsdbPath, err)
	}
	defer dirLock.Release()
	tracker, err := tsdb.NewQueryTracker(logger, f.tsdbPath, f.maxConcurrency)
	if err != nil {
		return err
	}
	defer tracker.Close()
	apiOpts.Tracker = tracker
	apiOpts.Features = promfeatures.NewRegistry()
	engine := tsdb.NewEngine(logger, reg, apiOpts)

	// Outputs to remote-write upstream go through a log of their own,
	// tailed by Prometheus's remote-write queues.
	fwd, err := forward.New(logger.With("component", "remote"), reg, filepath.Join(f.tsdbPath, forward.Dir), f.remoteWrite, time.Duration(f.flushDeadline))
	if err != nil {
		return err
	}
	// The remote writes are applied (their log opened) once the server
	// answers, below: when a start replayed the log (it now empties it), a
	// backlog of hours took seconds with /-/healthy unanswered, and a
	// liveness probe restarted omen.
	defer func() {
		if !serving { // a later step failed: the log's lock goes too
			_ = fwd.Close()
		}
	}()
	// omen's remote_write and remote_read are Prometheus's, shown with
	// their secrets as <secret>; the rest of its configuration is at
	// /api/v1/status/omen.
	apiOpts.Config = func() promconfig.Config {
		c := cfgLoader.Config()
		return promconfig.Config{RemoteWriteConfigs: fwd.Configs(c.RemoteWrite), RemoteReadConfigs: c.RemoteRead}
	}

	popts := *f.pipeline
	popts.Forward = fwd
	popts.SnapshotPath = filepath.Join(f.tsdbPath, pipeline.SnapshotFile)
	popts.SnapshotRoom = store.Room
	// /api/v1/anomalies waits for a slot of its own and is bounded by the
	// queries' timeout: unauthenticated by default, it is as much an
	// in-cluster client's lever on ingest as a query; but it reads the
	// scorers' state, not the TSDB, and does not wait behind the PromQL
	// queries (see pipeline.AnomalyConcurrency).
	popts.QueryGate = pipeline.NewGate(pipeline.AnomalyConcurrency)
	popts.QueryTimeout = time.Duration(f.queryTimeout)
	popts.Build = pipeline.BuildInfo{Version: version.Version, Revision: version.Revision, GoVersion: runtime.Version()}
	popts.Ready = f.runtime.restoring
	var wh *tsdb.WriteHandler // set below; Stats is only called once serving
	popts.Stats = func() (int, map[string]float64) { return int(store.HeadSeries()), wh.Rejected() }
	pl, err := pipeline.New(logger, reg, store, engine, cfgLoader.Config(), popts)
	if err != nil {
		return err
	}
	// Nothing reloads before the run group starts (the reloader and the
	// server are actors of it).
	cfgLoader.OnReload(reloadListener(pl, fwd))
	// The per-series families (outputs, omen_model_ready) are streamed by
	// /metrics, not built as client_golang metrics on every scrape.
	reg.MustRegister(pl.AccuracyCollector())

	// Every sample written is stored, then handed to the scorers on commit.
	appendable := pl.Tap(store)
	// /-/ready also fails while storage refuses writes (disk full,
	// read-only), so orchestrators see it; queries keep working then.
	ready := func() bool { return store.Ready() && pl.Ready() }
	readable := func() bool { return store.Opened() && pl.Ready() }

	// The web handlers' lines are component=web, and the forwarder's
	// component=remote, as Prometheus's (its write handler's rejections
	// are component=web).
	webLogger := logger.With("component", "web")
	quit := make(chan struct{}) // closed by POST /-/quit
	var quitOnce sync.Once
	server.Lifecycle{
		Ready: ready, Reload: cfgLoader.Reload, Enabled: f.enableLifecycle,
		Quit: func() { quitOnce.Do(func() { close(quit) }) },
	}.Register(mux)
	mux.Handle("GET /metrics", "/metrics", server.MetricsHandler(webLogger, reg, pl.WriteOutputs))
	f.write.MaxRequestBytes = int64(f.maxReqBytes)
	// Prometheus's /api/v1/metadata reads scrape targets, which omen has
	// none of: the senders' metadata is served instead.
	f.write.Metadata = tsdb.NewMetadata(reg, apiOpts.CORSOrigin)
	// Remote-write 1.0 declares types apart from the samples: a counter
	// whose name does not say so is scored as a rate once it is declared.
	f.write.Metadata.OnTypes(pl.NoteTypes)
	for family, help := range pipeline.StoredFamilies() {
		f.write.Metadata.Own(family, metadata.Metadata{Type: model.MetricTypeGauge, Help: help})
	}
	mux.Handle("/api/v1/metadata", "/api/v1/metadata", server.APIEndpoint(apiOpts.CORSOrigin, f.write.Metadata, http.MethodGet))
	f.write.MaxInflightBytes = int64(f.maxInflightB)
	f.write.OutOfOrderTimeWindow = time.Duration(f.oooWindow)
	f.write.HeadSeries = store.HeadSeries
	wh = tsdb.NewWriteHandler(webLogger, reg, appendable, f.write)
	// A TSDB reopened to repair its WAL numbers its series anew: the write
	// path's cached references and the scorers' series go.
	store.OnReopen(func() {
		wh.StorageReopened()
		pl.StorageReopened()
	})
	// Series the head drops lose their models too (they come back with new
	// references), and under --write.max-head-series the write path's
	// cached references (see WriteHandler.SeriesDeleted).
	store.OnSeriesDeleted(func(refs []storage.SeriesRef) {
		pl.SeriesDeleted(refs)
		wh.SeriesDeleted(refs)
	})
	mux.Handle("/api/v1/write", "/api/v1/write", wh)
	mux.Handle("/api/v1/anomalies", "/api/v1/anomalies", server.APIEndpoint(apiOpts.CORSOrigin, server.RequireReady(readable)(pl.AnomaliesHandler().ServeHTTP), http.MethodGet, http.MethodPost))
	mux.Handle("/api/v1/status/omen", "/api/v1/status/omen", server.APIEndpoint(apiOpts.CORSOrigin, pl.StatusHandler(), http.MethodGet))
	mux.HandleAPI("/api/v1/", tsdb.NewAPI(logger, reg, reg, store, engine, apiOpts, server.RequireReady(readable)))
	ui, err := omenweb.New(webLogger, omenweb.Options{})
	if err != nil {
		return err
	}
	mux.Handle("/{$}", "/", ui)
	mux.Handle(omenweb.StaticPrefix, omenweb.StaticPrefix, ui)
	mux.HandlePprof()

	var g run.Group
	{
		// Termination: main's context is cancelled on SIGINT and SIGTERM;
		// or /-/quit.
		cctx, cancel := context.WithCancel(ctx)
		g.Add(func() error {
			select {
			case <-cctx.Done():
				if ctx.Err() != nil {
					logger.Info("Received termination signal, shutting down")
				}
			case <-quit:
				logger.Info("Received a quit request (/-/quit), shutting down")
			}
			return nil
		}, func(error) { cancel() })
	}
	if f.runtime.settle {
		st := memrelease.NewSettler(logger.With("component", "memrelease"), defaultGOGC, 30*time.Second, func() int64 {
			if !pl.Ready() {
				return 1 // the replay and the restore to come
			}
			return pl.RestoresPending()
		})
		sctx, cancel := context.WithCancel(context.Background())
		g.Add(func() error { return st.Run(sctx) }, func(error) { cancel() })
	}
	if f.runtime.releaseFree {
		rel := memrelease.New(logger.With("component", "memrelease"), reg, 30*time.Second)
		rctx, cancel := context.WithCancel(context.Background())
		g.Add(func() error { return rel.Run(rctx) }, func(error) { cancel() })
	}
	{
		// Reload on SIGHUP (caught from the start, see hup).
		done := make(chan struct{})
		g.Add(func() error {
			for {
				select {
				case <-hup:
					_ = cfgLoader.Reload()
				case <-done:
					return nil
				}
			}
		}, func(error) { close(done) })
	}
	{
		// HTTP first among the interrupts, so in-flight writes finish before
		// the TSDB closes.
		// TLS and basic auth come from the exporter-toolkit web config;
		// server.Listen keeps /-/healthy open without credentials.
		g.Add(func() error {
			if err := listeners.Serve(); !errors.Is(err, http.ErrServerClosed) {
				return fmt.Errorf("HTTP server: %w", err)
			}
			return nil
		}, func(error) {
			sctx, cancel := context.WithTimeout(context.Background(), f.shutdownGrace)
			defer cancel()
			if err := srv.Shutdown(sctx); err != nil {
				logger.Warn("HTTP shutdown", "err", err)
				// Connections still open are closed: a handler reading
				// a slow body does not watch its context.
				_ = srv.Close()
			}
			// Requests still running past the grace (a long query) are
			// cancelled, and the TSDB they read closes after them.
			if !inflight.Cancel(5 * time.Second) {
				logger.Warn("HTTP shutdown: requests still running 5s after they were cancelled; closing the storage under them")
			}
		})
	}
	{
		// The TSDB opens (replaying its WAL) while the server already
		// answers /-/healthy, then the pipeline restores its models and
		// scores until shutdown. The interrupt waits for the pipeline's
		// final snapshot; the TSDB closes after the group is done.
		pctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		g.Add(func() error {
			defer close(done)
			if err := cfgLoader.Apply(func(c *config.Config) error { return fwd.ApplyConfig(c.RemoteWrite) }); err != nil {
				_ = fwd.Close() // the log may be open
				return err
			}
			// On a full disk the replay would panic: wait for room first.
			if err := store.AwaitRoom(pctx); err != nil {
				_ = fwd.Close()
				return nil // shut down while waiting
			}
			// A shutdown during the replay does not wait for its end:
			// nothing was taken yet, and the next start replays the WAL
			// anyway (see tsdb.Storage.OpenContext).
			if err := store.OpenContext(pctx); err != nil {
				_ = fwd.Close() // its queues and log reader run
				if pctx.Err() != nil {
					logger.Info("Shut down during the TSDB's WAL replay; the replay is left to the exit, and the next start replays the WAL again", "err", err)
					return nil
				}
				return err
			}
			err := pl.Run(pctx)
			// The last outputs are logged; the queues get the flush
			// deadline to send what they still hold.
			if cerr := fwd.Close(); cerr != nil {
				logger.Error("Closing remote write", "err", cerr)
			}
			return err
		}, func(error) {
			cancel()
			<-done
		})
	}
	serving = true
	err = g.Run()
	closeStorage(logger, store, f.tsdbShutdown)
	logger.Info("omen stopped")
	return err
}

// closeStorage closes the TSDB, the shutdown's last step, within timeout:
// a close held by a stalled disk, or by work that heeds no cancellation (a
// WAL checkpoint), is left to the exit, which loses nothing acknowledged
// (see tsdb.Storage.Shutdown).
func closeStorage(logger *slog.Logger, store *tsdb.Storage, timeout time.Duration) {
	start := time.Now()
	opened := store.Opened() // not after a shutdown during the WAL replay
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := store.Shutdown(ctx); err != nil {
		logger.Error("Closing TSDB", "err", err, "timeout", timeout)
		return
	}
	if opened {
		logger.Info("TSDB closed", "duration", time.Since(start))
	}
}

// validate refuses flag values the components would otherwise replace by
// their defaults without a word (or, for a negative grace, turn into none).
func (f *serveFlags) validate() error {
	// An empty address (a templated one whose variable is unset) listened
	// on every interface at a port the kernel picked.
	for _, a := range f.listen {
		if strings.TrimSpace(a) == "" {
			return errors.New("--web.listen-address: empty; want host:port (:9201 for every interface)")
		}
	}
	switch {
	case f.maxConns < 0:
		return fmt.Errorf("--web.max-connections=%d: want 0 (no limit) or more", f.maxConns)
	case f.maxNotesSubs < 0:
		return fmt.Errorf("--web.max-notifications-subscribers=%d: want 0 (none) or more", f.maxNotesSubs)
	case f.write.MaxInflightRequests < 1:
		return fmt.Errorf("--write.max-inflight-requests=%d: want at least 1", f.write.MaxInflightRequests)
	case f.maxInflightB < 1:
		return fmt.Errorf("--write.max-inflight-bytes=%s: want more than 0", f.maxInflightB)
	case f.maxReqBytes < 1:
		return fmt.Errorf("--web.max-request-bytes=%s: want more than 0", f.maxReqBytes)
	case f.write.MaxSeriesPerRequest < 1, f.write.Labels.MaxLabels < 1, f.write.Labels.MaxNameLength < 1, f.write.Labels.MaxValueLength < 1:
		return errors.New("--write.max-series-per-request and --write.max-labels-per-series, --write.max-label-name-length, --write.max-label-value-length: want at least 1")
	case f.write.HA.ReplicaLabel != "" && (f.write.HA.ClusterLabel == "" || f.write.HA.ClusterLabel == f.write.HA.ReplicaLabel):
		return fmt.Errorf("--write.ha-cluster-label=%q: want a label other than --write.ha-replica-label", f.write.HA.ClusterLabel)
	case f.write.HA.FailoverTimeout <= 0 || f.write.HA.MaxClusters < 1:
		return errors.New("--write.ha-failover-timeout and --write.ha-max-clusters: want more than 0")
	case f.shutdownGrace < 0:
		return fmt.Errorf("--web.shutdown-grace=%s: want >= 0", f.shutdownGrace)
	case f.tsdbShutdown <= 0:
		return fmt.Errorf("--storage.tsdb.shutdown-timeout=%s: want more than 0", f.tsdbShutdown)
	case f.readTimeout <= 0:
		return fmt.Errorf("--web.read-timeout=%s: want more than 0", f.readTimeout)
	case f.lookbackDelta <= 0:
		return fmt.Errorf("--query.lookback-delta=%s: want more than 0", f.lookbackDelta)
	case f.flushDeadline < 0:
		return fmt.Errorf("--storage.remote.flush-deadline=%s: want >= 0", f.flushDeadline)
	case f.queryTimeout <= 0:
		// Prometheus takes it, and then times every query out at once:
		// the API's, and here every derived input's evaluation.
		return fmt.Errorf("--query.timeout=%s: want more than 0", f.queryTimeout)
	// The pipeline takes a zero as its default (5m between snapshots, 1h
	// before a silent series is dropped): --snapshot.interval=0 read as
	// "no periodic snapshots" and --detect.stale-after=0s as "never" ran
	// with the defaults without a word.
	case f.pipeline.QueueSize < 1:
		return fmt.Errorf("--detect.queue-size=%d: want at least 1", f.pipeline.QueueSize)
	case f.pipeline.ForecastEvery <= 0:
		return fmt.Errorf("--forecast.interval=%s: want more than 0", f.pipeline.ForecastEvery)
	case f.pipeline.SnapshotInterval < time.Second:
		return fmt.Errorf("--snapshot.interval=%s: want at least 1s", f.pipeline.SnapshotInterval)
	case f.pipeline.StaleAfter < time.Minute:
		return fmt.Errorf("--detect.stale-after=%s: want at least 1m", f.pipeline.StaleAfter)
	case f.pipeline.ShutdownDrain <= 0:
		return fmt.Errorf("--detect.shutdown-drain=%s: want more than 0", f.pipeline.ShutdownDrain)
	case f.pipeline.ShutdownSnapshot <= 0:
		return fmt.Errorf("--snapshot.shutdown-timeout=%s: want more than 0", f.pipeline.ShutdownSnapshot)
	}
	return nil
}

// featureSTZeroIngestion stores a remote-write 2.0 sample's start timestamp
// (the time its counter started from zero) as a zero sample, as Prometheus
// does with the same feature, so rate() and increase() see the first
// increment and a reset between two samples.
const featureSTZeroIngestion = "created-timestamp-zero-ingestion"

// knownFeatures are the names --enable-feature takes.
var knownFeatures = []string{featureSTZeroIngestion}

// parseFeatures turns --enable-feature's values (each comma separated)
// into a set; an unknown name is an error rather than Prometheus's warning,
// so a typo does not pass for a feature that is on.
func parseFeatures(values []string) (map[string]bool, error) {
	on := map[string]bool{}
	for _, v := range values {
		for name := range strings.SplitSeq(v, ",") {
			name = strings.TrimSpace(name)
			if name == "" {
				continue
			}
			if !slices.Contains(knownFeatures, name) {
				return nil, fmt.Errorf("--enable-feature: unknown feature %q (valid: %s)", name, strings.Join(knownFeatures, ", "))
			}
			on[name] = true
		}
	}
	return on, nil
}

// flagValues maps each flag's name to its value as parsed, as Prometheus
// fills its /api/v1/status/flags, with the passwords of URLs (a
// --remote-write.url may carry basic auth) replaced as url.URL.Redacted
// replaces them: the page is readable by whoever can query.
func flagValues(groups ...[]*kingpin.FlagModel) map[string]string {
	m := map[string]string{}
	for _, flags := range groups {
		for _, f := range flags {
			m[f.Name] = server.RedactURLs(f.Value.String())
		}
	}
	return m
}

// walCompression is the TSDB WAL's compression for the flags, as
// Prometheus decides it: none unless on, then the type.
func walCompression(on bool, typ string) compression.Type {
	if !on {
		return compression.None
	}
	return typ
}

// configPreparer is the pipeline's side of a reload (pipeline.Pipeline):
// PrepareConfig does all that can fail and changes nothing; the commit it
// returns applies the configuration and cannot fail.
type configPreparer interface {
	PrepareConfig(*config.Config) (commit func(), err error)
}

// remoteWriter is the forwarder's side of a reload (forward.Forwarder):
// ApplyConfig checks every queue before it changes one, so a refusal
// leaves the remote writes as they were.
type remoteWriter interface {
	ApplyConfig([]*promconfig.RemoteWriteConfig) error
}

// reloadListener applies a reloaded configuration to the pipeline and the
// remote writes, all or nothing (Prometheus applies what its other
// components take of a file one refuses; omen's docs promise a refused
// reload changes nothing, and its metric says so): the pipeline is
// prepared first (its remote_read refused, a TLS file of it missing), then
// the remote writes change, the one step that may still fail, changing
// nothing when it does (a queue's client refused, the forwarding log not
// opened), and only then is the pipeline's part committed. A reload whose
// pipeline step failed after the remote writes had changed was reported
// failed with its remote writes in force.
func reloadListener(pl configPreparer, fwd remoteWriter) func(*config.Config) error {
	return func(c *config.Config) error {
		commit, err := pl.PrepareConfig(c)
		if err != nil {
			return err
		}
		if err := fwd.ApplyConfig(c.RemoteWrite); err != nil {
			return err
		}
		commit()
		return nil
	}
}
