// Package forward remote-writes omen's outputs upstream (Thanos Receive,
// Mimir, VictoriaMetrics) the way Prometheus in agent mode forwards its
// samples: they are appended to a write-ahead log of their own, and the
// prometheus module's remote-write queues tail that log. So an upstream that
// is down or slow costs disk, not samples, for as long as the log keeps
// them (up to four hours), the queues shard, back off and honour
// Retry-After as Prometheus's do, and what is sent is what was committed.
//
// The log holds the outputs only: the inputs stay in the embedded TSDB,
// which is what makes a separate log worth its cost (copies of the outputs
// that Prometheus scraped from omen and wrote back would otherwise be
// forwarded beside the originals).
package forward

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	config_util "github.com/prometheus/common/config"
	"github.com/prometheus/common/model"
	promconfig "github.com/prometheus/prometheus/config"
	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/storage/remote"
	"github.com/prometheus/prometheus/tsdb/agent"
	"github.com/prometheus/prometheus/util/compression"
	"go.yaml.in/yaml/v2"
)

// Dir is the log's folder under the storage path.
const Dir = "forward"

// Forwarder owns the outputs' log and the remote-write queues that tail it.
// The log is opened when the first remote write is configured (at start or
// by a reload), so omen without one pays nothing.
type Forwarder struct {
	logger        *slog.Logger
	reg           prometheus.Registerer
	dir           string
	flushDeadline time.Duration
	flags         []*promconfig.RemoteWriteConfig // from --remote-write.url
	truncateEvery time.Duration                   // the log's truncation period; tests shorten it
	closeLogWait  time.Duration                   // the bound on the log's close (see closeLog); tests shorten it
	failingEvery  time.Duration                   // how often failing queues are warned of (see failingEvery); tests shorten it

	mu     sync.Mutex // held by ApplyConfig and Close, which may take a flush deadline: never by AppenderV2
	db     *agent.DB
	rs     *remote.Storage
	closed bool
	// openErr is why the log did not open. It is not tried again: the
	// module's storages register their metrics as they are made, and a
	// second attempt would register them twice (a panic).
	openErr error
	// torn is why the module's ApplyConfig failed after checkQueues
	// passed (a TLS file gone between the two): see ApplyConfig.
	torn error
	// inForce are the remote writes the queues run, as last applied.
	inForce []*promconfig.RemoteWriteConfig
	// checked, if set, runs between checkQueues and the module's
	// ApplyConfig: tests make a file go there.
	checked func()
	// batchWait is the longest batch_send_deadline of the queues in
	// force: Close waits at least that long for those it has not stopped
	// yet (see Close).
	batchWait time.Duration
	// app is the log, then the queues' sample-rate tracker; nil until the
	// log is open and after Close. The scorers read it on every batch, so
	// it is not behind mu: a reload that stops a queue waits up to the
	// flush deadline, and scoring stalled with it.
	app    atomic.Pointer[fanout]
	active atomic.Bool  // at least one queue configured
	maxT   atomic.Int64 // the newest output time logged
	notify *notifier    // the log's commit notices to the queues; nil until open
	skips  *skipCounter // the queues' log readers that started again from the present
	// failing warns of each queue failing to send; nil until the log
	// is open and after Close.
	failing *failingQueues
}

// notifier passes the log's commit notices to the queues from a goroutine
// of its own. The remote storage's Notify waits on the lock its
// ApplyConfig holds while a changed queue flushes (up to the flush
// deadline, to a dead upstream); a commit of outputs waited with it, and
// scoring stalled: 200 000 samples dropped in 15 s of one reload.
type notifier struct {
	pending chan struct{}
	done    chan struct{}
	stopped sync.WaitGroup
}

func newNotifier(to interface{ Notify() }) *notifier {
	n := &notifier{pending: make(chan struct{}, 1), done: make(chan struct{})}
	n.stopped.Add(1)
	go func() {
		defer n.stopped.Done()
		for {
			select {
			case <-n.pending:
				to.Notify()
			case <-n.done:
				return
			}
		}
	}()
	return n
}

// Notify never waits: a notice pending already covers this commit too.
func (n *notifier) Notify() {
	select {
	case n.pending <- struct{}{}:
	default:
	}
}

func (n *notifier) stop() {
	close(n.done)
	n.stopped.Wait()
}

type fanout struct{ storage.Storage }

// New returns a Forwarder whose log lives in dir (see Dir). urls are the
// --remote-write.url endpoints, each a remote write with Prometheus's
// defaults; ApplyConfig adds those of the configuration file.
func New(logger *slog.Logger, reg prometheus.Registerer, dir string, urls []string, flushDeadline time.Duration) (*Forwarder, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	f := &Forwarder{logger: logger, reg: reg, dir: dir, flushDeadline: flushDeadline, truncateEvery: truncateEvery, closeLogWait: closeLogWait, failingEvery: failingEvery, skips: newSkipCounter(reg)}
	f.maxT.Store(math.MinInt64)
	// On reg whether or not anything is forwarded: Prometheus shows them,
	// at 0, with no remote_write configured. Registered only once the
	// log opened, they were missing from /metrics with forwarding off.
	if err := registerModuleGlobals(reg, moduleGlobals); err != nil {
		logger.Warn("Remote write metrics the module keeps on its default registry are not on /metrics", "err", err)
	}
	for _, u := range urls {
		c, err := URLConfig(u)
		if err != nil {
			return nil, err
		}
		f.flags = append(f.flags, c)
	}
	return f, nil
}

// URLConfig is the remote write --remote-write.url=u stands for: Prometheus's
// defaults, with a user and password in the URL as basic auth, and 429s
// retried (Mimir and Thanos answer them to a tenant over its limits; what
// they refuse is otherwise lost).
func URLConfig(u string) (*promconfig.RemoteWriteConfig, error) {
	pu, err := url.Parse(u)
	if err != nil || (pu.Scheme != "http" && pu.Scheme != "https") || pu.Host == "" {
		return nil, fmt.Errorf("remote-write URL %q: want an absolute http(s) URL", redact(u))
	}
	// A user and password in the URL become basic auth, and leave the
	// URL: the prometheus module logs its queues' URLs as they are.
	c := promconfig.DefaultRemoteWriteConfig
	c.URL = &config_util.URL{URL: pu}
	moveURLCredentials(&c)
	c.QueueConfig.RetryOnRateLimit = true
	return &c, nil
}

// moveURLCredentials takes a user and password out of c's URL, which the
// prometheus module logs as it is (a configuration file's URL with a
// password had it logged at every queue start, stop and failed send), and
// keeps what is sent as it was. Go's HTTP client makes the URL's user the
// Authorization header before the configuration's round trippers run:
// basic_auth, authorization and bearer_token leave a header that is set, so
// the URL's user was what was sent, and it becomes the basic auth in their
// place; OAuth 2.0 and the clouds' signing set their own over it, so it was
// never sent, and goes. The URL is copied, not changed in place.
func moveURLCredentials(c *promconfig.RemoteWriteConfig) {
	if c.URL == nil || c.URL.URL == nil || c.URL.User == nil {
		return
	}
	u := *c.URL.URL
	user := u.User
	u.User = nil
	c.URL = &config_util.URL{URL: &u}
	h := &c.HTTPClientConfig
	if h.OAuth2 != nil || c.SigV4Config != nil || c.AzureADConfig != nil || c.GoogleIAMConfig != nil {
		return
	}
	pw, _ := user.Password()
	h.BasicAuth = &config_util.BasicAuth{Username: user.Username(), Password: config_util.Secret(pw)}
	h.Authorization, h.BearerToken, h.BearerTokenFile = nil, "", ""
}

func redact(u string) string {
	if pu, err := url.Parse(u); err == nil {
		return pu.Redacted()
	}
	return "(unparsable URL)"
}

// Configs returns the remote writes in force with the configuration file's
// rws (the flags' first) as the queues run them, which /api/v1/status/config
// shows: no metadata is sent (the module's metadata watcher reads a scrape
// manager omen does not have, and the log holds no metadata records for
// remote write 2.0 to send; the outputs are all gauges, which is what a
// receiver assumes), and a URL's user is a credential of its own (see
// moveURLCredentials). rws are not changed.
func (f *Forwarder) Configs(rws []*promconfig.RemoteWriteConfig) []*promconfig.RemoteWriteConfig {
	all := append(append([]*promconfig.RemoteWriteConfig{}, f.flags...), rws...)
	for i, c := range all {
		cc := *c
		cc.MetadataConfig.Send = false
		moveURLCredentials(&cc)
		all[i] = &cc
	}
	return all
}

// ApplyConfig sets the remote writes: the flags' and rws (the
// configuration file's remote_write). Queues whose configuration did not
// change keep running; a new one starts with the samples logged from now
// on, as Prometheus's do. A queue removed or changed first sends what it holds,
// for up to the flush deadline; ApplyConfig returns after one flush
// deadline (a second at least) whatever the number of queues stopping, the
// stops and the start of the queues changed going on behind it.
func (f *Forwarder) ApplyConfig(rws []*promconfig.RemoteWriteConfig) error {
	f.mu.Lock()
	unlock := true // false once the apply's goroutine owns the lock (see below)
	defer func() {
		if unlock {
			f.mu.Unlock()
		}
	}()
	if f.closed {
		return errors.New("remote write: shutting down")
	}
	if f.torn != nil {
		return fmt.Errorf("remote write: a reload failed midway (%w); restart omen to change the remote writes", f.torn)
	}
	cfgs := f.Configs(rws)
	if err := checkQueues(cfgs); err != nil {
		return err
	}
	if len(cfgs) > 0 && f.db == nil {
		if f.openErr != nil {
			return fmt.Errorf("%w (restart omen to try again)", f.openErr)
		}
		if err := f.open(); err != nil {
			f.openErr = err
			return err
		}
	}
	if f.rs == nil {
		return nil
	}
	if f.checked != nil {
		f.checked()
	}
	// The module stops each queue removed or changed, one after
	// another, each sending what it holds for up to the flush deadline:
	// to an upstream not answering, the whole deadline, and /-/reload
	// waited N deadlines for N such queues. Its own "Stopping remote
	// storage..." is logged for the first queue only (its logger repeats
	// a message once a minute across queues), and says nothing of the
	// wait.
	stopping := stoppedBy(f.inForce, cfgs)
	for _, c := range stopping {
		f.logger.Info("Remote write reload stops a queue; it sends what it holds for up to the flush deadline", "remote_name", queueName(c), "url", c.URL.Redacted(), "flush_deadline", f.flushDeadline)
	}
	applyStart := time.Now()
	done := make(chan error, 1)
	go func() {
		err := f.rs.ApplyConfig(&promconfig.Config{RemoteWriteConfigs: cfgs})
		done <- f.applied(cfgs, err, len(stopping), time.Since(applyStart))
	}()
	if len(stopping) == 0 {
		return <-done
	}
	// The module can fail only as it makes the queues' clients, before
	// it stops any: a reload still applying after that is stopping
	// queues, and will succeed. So it answers after one flush deadline
	// at most, and the stops go on behind it, holding f.mu (the next
	// reload and Close wait for them, as they did). Nothing is lost
	// that waiting kept: the queues stopped drop at their deadline what
	// they still hold either way, and the queues started (new or
	// changed) start when the stops end either way, with the outputs
	// logged from then on.
	select {
	case err := <-done:
		return err
	case <-time.After(max(f.flushDeadline, time.Second)):
		unlock = false
		go func() {
			<-done
			f.mu.Unlock()
		}()
		f.logger.Warn("Remote write reload answered with queues still stopping, their upstreams not answering; the next reload or a shutdown waits for them", "queues", len(stopping), "waited", time.Since(applyStart))
		return nil
	}
}

// applied records the module's ApplyConfig of cfgs, which ended in err and
// stopped stopped queues in took; f.mu is held.
func (f *Forwarder) applied(cfgs []*promconfig.RemoteWriteConfig, err error, stopped int, took time.Duration) error {
	if err != nil {
		// checkQueues passed, so a file it read went since (a
		// certificate rotated by delete and create): the module failed
		// midway, and the queues it kept before the failing one run on
		// outside its list. A reload that keeps them starts them again,
		// and omen panicked on their metrics registered twice. The
		// queues run on as they are until a restart; reading the TLS
		// files once for both would stop the module following their
		// rotation, which it does by reading them again as they change.
		f.torn = err
		f.logger.Error("Remote write reload failed midway; the queues run on as they were, and further changes need a restart", "err", err)
		return fmt.Errorf("remote write: %w", err)
	}
	if stopped > 0 {
		f.logger.Info("Remote write reload stopped its queues", "queues", stopped, "took", took)
	}
	f.inForce = cfgs
	f.skips.setQueues(cfgs)
	f.active.Store(len(cfgs) > 0)
	f.batchWait = 0
	for _, c := range cfgs {
		f.batchWait = max(f.batchWait, time.Duration(c.QueueConfig.BatchSendDeadline))
	}
	return nil
}

// stoppedBy returns the queues of old that applying cfgs stops: those whose
// configuration is not in cfgs, as the module tells queues apart (by their
// YAML).
func stoppedBy(old, cfgs []*promconfig.RemoteWriteConfig) []*promconfig.RemoteWriteConfig {
	kept := map[string]bool{}
	for _, c := range cfgs {
		if b, err := yaml.Marshal(c); err == nil {
			kept[string(b)] = true
		}
	}
	var stopped []*promconfig.RemoteWriteConfig
	for _, c := range old {
		if b, err := yaml.Marshal(c); err != nil || !kept[string(b)] {
			stopped = append(stopped, c)
		}
	}
	return stopped
}

// Check fails where ApplyConfig would fail on the configuration file's rws
// (without the flags' remote writes), changing nothing: for `omen check
// config`.
func Check(rws []*promconfig.RemoteWriteConfig) error {
	return checkQueues((&Forwarder{}).Configs(rws))
}

// checkQueues fails where the remote storage's ApplyConfig would fail on
// cfgs: a queue's client that cannot be made (a TLS file not there yet), or
// two remote writes the same. The module fails midway, with the queues it
// keeps already taken out of its list: they ran on untracked (never stopped
// nor flushed at shutdown), and the next reload that kept them started them
// again, and omen died of their metrics registered twice.
func checkQueues(cfgs []*promconfig.RemoteWriteConfig) error {
	seen := map[string]bool{}
	for _, c := range cfgs {
		// The module tells queues apart by their configurations' YAML.
		b, err := yaml.Marshal(c)
		if err != nil {
			return fmt.Errorf("remote write to %s: %w", c.URL.Redacted(), err)
		}
		if seen[string(b)] {
			return fmt.Errorf("remote write to %s: given twice, the same", c.URL.Redacted())
		}
		seen[string(b)] = true
		// The client the module makes of c, made and dropped: nothing
		// is dialled before a request.
		if _, err := remote.NewWriteClient("check", &remote.ClientConfig{
			URL:              c.URL,
			WriteProtoMsg:    c.ProtobufMessage,
			Timeout:          c.RemoteTimeout,
			HTTPClientConfig: c.HTTPClientConfig,
			SigV4Config:      c.SigV4Config,
			AzureADConfig:    c.AzureADConfig,
			GoogleIAMConfig:  c.GoogleIAMConfig,
			Headers:          c.Headers,
			RetryOnRateLimit: c.QueueConfig.RetryOnRateLimit,
			RoundRobinDNS:    c.RoundRobinDNS,
		}); err != nil {
			return fmt.Errorf("remote write to %s: %w", c.URL.Redacted(), err)
		}
	}
	return nil
}

// open opens the log and the remote storage tailing it.
func (f *Forwarder) open() error {
	if err := os.MkdirAll(f.dir, 0o777); err != nil {
		return fmt.Errorf("forwarding log: %w", err)
	}
	// What the log holds from before this start is never sent: a queue's
	// reader skips the samples older than its own start, as Prometheus's
	// does after a restart. Kept, it cost a replay at every start, and an
	// omen restarted more often than the truncation period (deploys, a
	// crash loop) never truncated it.
	if err := os.RemoveAll(filepath.Join(f.dir, "wal")); err != nil {
		return fmt.Errorf("forwarding log: drop the previous run's: %w", err)
	}
	// The module's log is omen's, through a handler that counts its
	// queues' log readers starting again from the present (skipHandler).
	// Its metrics are read back for the failing queues' warnings.
	logger := slog.New(&skipHandler{next: f.logger.Handler(), skips: f.skips})
	tap := newTapRegisterer(f.reg)
	f.rs = remote.NewStorage(logger, tap, func() (int64, error) { return 0, nil }, f.dir, f.flushDeadline, nil, false)
	opts := agent.DefaultOptions()
	opts.WALCompression = compression.Snappy
	opts.TruncateFrequency = f.truncateEvery
	// The log's own metrics carry a prefix: their Prometheus names are the
	// embedded TSDB's (prometheus_tsdb_wal_*), registered already.
	db, err := agent.Open(f.logger, prometheus.WrapRegistererWithPrefix("omen_forward_", f.reg), f.rs, filepath.Clean(f.dir), opts)
	if err != nil {
		_ = f.rs.Close()
		f.rs = nil
		return fmt.Errorf("open the forwarding log in %s: %w", f.dir, err)
	}
	f.failing = startFailingQueues(f.logger, tap.own, f.failingEvery)
	f.notify = newNotifier(f.rs)
	db.SetWriteNotified(f.notify) // the queues read a commit at once, not on their next poll
	f.db = db
	// The remote storage's appender only tracks the incoming sample rate
	// and highest timestamp, from which the queues size their shards and
	// prometheus_remote_storage_highest_timestamp_in_seconds comes.
	f.app.Store(&fanout{storage.NewFanout(f.logger, db, f.rs)})
	return nil
}

// truncateEvery is how often the forwarding log drops what every queue has
// sent (or what is older than 4 h), counted from its opening: the
// prometheus module's default for agent mode. Each truncation starts a new
// segment and checkpoints the oldest two thirds of the segments, whether
// or not a queue has read them (prometheus/prometheus#17616); a queue's
// reader that meets a deleted segment starts again from the present, and
// what it had not read of an outage's backlog is lost. At 15 min that came
// after ~45 min of an outage; at 2 h, not before 6 h as long as the
// segments (128 MB) fill more slowly than that: up to ~100 000 forwarded
// series at a 1m interval (~9 bytes a sample in the log).
const truncateEvery = 2 * time.Hour

// AppenderV2 returns an appender for outputs to forward, or nil while no
// remote write is configured.
func (f *Forwarder) AppenderV2(ctx context.Context) storage.AppenderV2 {
	if !f.active.Load() {
		return nil
	}
	app := f.app.Load()
	if app == nil { // closed meanwhile
		return nil
	}
	return &tracker{AppenderV2: app.AppenderV2(ctx), f: f, maxT: math.MinInt64}
}

// tracker notes the newest time committed, which Close waits for.
type tracker struct {
	storage.AppenderV2
	f    *Forwarder
	maxT int64
}

func (a *tracker) Append(ref storage.SeriesRef, ls labels.Labels, st, t int64, v float64, h *histogram.Histogram, fh *histogram.FloatHistogram, opts storage.AOptions) (storage.SeriesRef, error) {
	r, err := a.AppenderV2.Append(ref, ls, st, t, v, h, fh, opts)
	if err == nil {
		a.maxT = max(a.maxT, t)
	}
	return r, err
}

func (a *tracker) Commit() error {
	if err := a.AppenderV2.Commit(); err != nil {
		return err
	}
	for {
		old := a.f.maxT.Load()
		if a.maxT <= old || a.f.maxT.CompareAndSwap(old, a.maxT) {
			return nil
		}
	}
}

// Close flushes the queues (for up to the flush deadline) and closes the
// log. Outputs appended after Close are refused.
func (f *Forwarder) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	wasActive := f.active.Swap(false)
	f.closed = true
	f.app.Store(nil)
	if f.db == nil {
		return nil
	}
	// A queue stops reading the log when told to stop, and flushes only
	// what it read: so first give every queue a moment (closeReadWait at
	// most, within the flush deadline) to send the newest output logged,
	// and so to have read the log to about its end. The queues keep that
	// time in whole seconds; a queue whose relabelling drops it, or whose
	// receiver is down, does not get there, which is why the wait is
	// short: the queues' own stop then flushes what they read, for up to
	// the flush deadline. A queue's log reader drops the commit notices
	// that come while it reads, and otherwise looks again only every 15 s:
	// so poke it.
	newest := f.maxT.Load() / 1000 * 1000
	readStart := time.Now()
	for deadline := readStart.Add(min(f.flushDeadline, closeReadWait)); wasActive && time.Now().Before(deadline) && f.rs.LowestSentTimestamp() < newest; {
		f.rs.Notify()
		time.Sleep(20 * time.Millisecond)
	}
	// No notice after the queues are gone. Then the remote storage: its
	// queues send what they hold. The module stops them one after
	// another, and one whose turn has not come when the wait ends loses
	// its last partial batch, which it sends only at its stop or when its
	// batch timer fires: within its batch_send_deadline of reading it,
	// which it did as the read wait began. So the wait is the flush
	// deadline, or that long from then if longer (a flush deadline under
	// 5 s, the default batch_send_deadline, lost a working upstream's
	// final batch whenever a hanging upstream's queue came first).
	f.notify.stop()
	f.failing.stop()
	db := f.db
	wait := max(f.flushDeadline, f.batchWait+closeSendSlack-time.Since(readStart))
	stopped, err := closeQueues(f.rs, wait)
	f.db, f.rs, f.notify, f.failing = nil, nil, nil, nil
	if !stopped {
		f.logger.Warn("Remote write queues still stopping after the wait for their stop (upstreams not answering); what they hold is dropped at the exit, and the forwarding log left open", "wait", wait, "flush_deadline", f.flushDeadline)
		return nil
	}
	return errors.Join(err, closeLog(db, f.closeLogWait))
}

// closeReadWait bounds Close's wait for the queues to read the log's end.
const closeReadWait = 5 * time.Second

// closeSendSlack is what Close leaves a queue's batch timer, past its
// batch_send_deadline, to send its partial batch to an upstream that
// answers.
const closeSendSlack = time.Second

// closeQueues closes rs, its queues sending what they hold, and reports
// whether it ended within wait; if not, the close goes on until the exit.
// The module stops its queues one after another under one lock, each for
// up to the flush deadline: with N upstreams not answering, a shutdown
// took N deadlines (minutes at the default), past a pod's termination
// grace, whose SIGKILL then cut the TSDB's close short as well. wait is
// one deadline for all of them (see Close): a queue whose turn has not
// come by then keeps sending meanwhile, its batch timer sending its
// partial batches, and loses only what it still holds at the end (what a
// hanging upstream kept it from sending), as does one that would drop it
// at its own deadline a moment later; the TSDB keeps those outputs (the
// forwarding log is dropped at the next start anyway).
func closeQueues(rs *remote.Storage, wait time.Duration) (bool, error) {
	done := make(chan error, 1)
	go func() { done <- rs.Close() }()
	select {
	case err := <-done:
		return true, err
	case <-time.After(wait):
		return false, nil
	}
}

// closeLog closes db, waiting for it at most wait. The module's agent DB
// takes its lock in Close and then waits for its truncation loop, which
// takes the same lock to truncate: a truncation that comes due as Close
// begins (the loop's select, with its timer and Close's stop both ready,
// picks either) waits on Close, and Close on it, for good
// (prometheus/prometheus v0.316.0, tsdb/agent/db.go). Close is omen's
// shutdown's, after the queues have flushed; the log is dropped at the
// next start anyway (open), so one left closing loses nothing, where a
// shutdown stuck on it never closed the TSDB and was killed.
func closeLog(db *agent.DB, wait time.Duration) error {
	done := make(chan error, 1)
	go func() { done <- db.Close() }()
	select {
	case err := <-done:
		return err
	case <-time.After(wait):
		return fmt.Errorf("close the forwarding log: still closing after %s (its truncation and its close wait on each other); left to the exit", wait)
	}
}

// closeLogWait bounds closeLog: the log's close is a truncation's wait at
// most (checkpointing segments), seconds, and a file's close.
const closeLogWait = 10 * time.Second

// DefaultFlushDeadline is Prometheus's --storage.remote.flush-deadline.
const DefaultFlushDeadline = model.Duration(time.Minute)
