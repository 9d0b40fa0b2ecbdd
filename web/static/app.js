// omen's page. Reads only omen's own API, relative to the page so a route
// prefix keeps working: api/v1/anomalies, api/v1/query, api/v1/query_range,
// api/v1/labels and api/v1/status/omen. State the end-to-end test reads is on
// window.omen.
(function () {
  "use strict";

  var meta = function (name, dflt) {
    var el = document.querySelector('meta[name="' + name + '"]');
    var v = el ? Number(el.content) : NaN;
    return isFinite(v) && v > 0 ? v : dflt;
  };
  var REFRESH_MS = meta("omen-refresh-ms", 15000);
  var THRESHOLD = 1; // vmanomaly's convention: a score above 1 is anomalous.
  // A series whose latest sample is older than this has stopped sending:
  // two of Prometheus's default 1 m scrape intervals.
  var SILENT_MS = 120000;
  // What each of detect's members looks for, shown as the explanation's
  // tooltip.
  var MEMBERS = {
    level: "the value left its usual level",
    seasonal: "the value differs from a season ago",
    lag: "a jump from the previous sample",
    shift: "the short-term mean shifted",
    variance: "the short-term variance changed",
    spectral: "a spike in the spectral residual",
    forest: "an unusual combination of features",
    range: "the value broke out of its recent range",
    long: "the value differs from a long season (a week) ago",
    novelty: "the last few samples took a shape the series has not shown for a while",
    flat: "the value has stopped moving: more samples in a row equal the one before than the series has made lately",
  };

  // Okabe-Ito colours; see style.css.
  var C = {
    value: "#1b1b1b",
    yhat: "#0072b2",
    band: "rgba(0,114,178,0.16)",
    bandEdge: "rgba(0,114,178,0.45)",
    forecast: "#00785a",
    cone: "rgba(0,158,115,0.22)",
    coneEdge: "rgba(0,120,90,0.55)",
    score: "#6a3d9a",
    threshold: "#d55e00",
    anomaly: "rgba(213,94,0,0.13)",
    since: "#d55e00",
  };

  var state = {
    match: "",
    limit: 25,
    range: meta("omen-range-seconds", 10800),
    live: true,
    anomalies: [],
    selected: null, // the selected anomaly's labels
    selectedKey: "",
    lastSince: null,
    selectedCounter: null, // whether the selected input is scored as a rate
    stored: 0, // series stored, from the status
    ingest: null, // samples/s over the last minute, from the status
  };
  var omen = (window.omen = {
    state: state,
    charts: { main: null, score: null },
    loads: { anomalies: 0, status: 0, series: 0 },
    clock: null, // {offset, rtt} in ms from the latest syncClock
  });

  var $ = function (id) { return document.getElementById(id); };

  function el(tag, attrs, kids) {
    var e = document.createElement(tag);
    if (attrs) Object.keys(attrs).forEach(function (k) {
      if (k === "text") e.textContent = attrs[k];
      else if (k === "class") e.className = attrs[k];
      else e.setAttribute(k, attrs[k]);
    });
    (kids || []).forEach(function (c) {
      if (c != null) e.appendChild(typeof c === "string" ? document.createTextNode(c) : c);
    });
    return e;
  }

  // ---- API ----------------------------------------------------------------

  // apiURL is omen's API path, relative to the page, without the user
  // and password of a page opened as http://user:pass@host/: the Fetch
  // standard forbids credentials in a request's URL, and fetch threw on
  // every call ("Request cannot be constructed from a URL that includes
  // credentials"). The browser sends the credentials it has for the page
  // without them.
  function apiURL(path) {
    var u = new URL("api/v1/" + path, document.baseURI);
    u.username = "";
    u.password = "";
    return u;
  }

  // api GETs omen's API path with the query parameters params; post
  // sends them as a form instead (which no cache answers from store).
  function api(path, params, post) {
    var qs = new URLSearchParams();
    (params || []).forEach(function (p) { qs.append(p[0], p[1]); });
    var url = apiURL(path), init = { headers: { Accept: "application/json" } };
    if (post) {
      init.method = "POST";
      init.body = qs;
      init.cache = "no-store";
    } else if (qs.toString()) {
      url.search = qs.toString();
    }
    return fetch(url.href, init).then(function (r) {
      return r.text().then(function (body) {
        var j = null;
        try { j = JSON.parse(body); } catch (e) { /* not JSON: reported below */ }
        if (!r.ok || !j || j.status !== "success") {
          var msg = j && j.error ? j.error : body.slice(0, 200) || r.statusText;
          throw new Error(path + ": HTTP " + r.status + ": " + msg);
        }
        return j.data;
      });
    });
  }

  var errors = {};
  function setError(what, err) {
    if (err) errors[what] = String(err.message || err);
    else delete errors[what];
    var msgs = Object.keys(errors).map(function (k) { return errors[k]; });
    $("error").hidden = msgs.length === 0;
    $("error").textContent = msgs.join(" · ");
  }

  // ---- PromQL selectors -----------------------------------------------------

  // A PromQL string literal: JSON's escapes are a subset of PromQL's.
  function lit(s) { return JSON.stringify(String(s)); }

  // A label name as PromQL takes it: quoted unless in the classic character
  // set (remote write accepts UTF-8 names such as service.name).
  var LEGACY_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;
  function labelName(k) { return LEGACY_NAME.test(k) ? k : lit(k); }

  // matchers renders labels as equality matchers (all but __name__ and the
  // names in skip).
  function matchers(labels, skip) {
    return Object.keys(labels).sort().filter(function (k) {
      return k !== "__name__" && !(skip && skip[k]);
    }).map(function (k) { return labelName(k) + "=" + lit(labels[k]); });
  }

  // renamed copies labels with the names matching re renamed by f.
  function renamed(labels, re, f) {
    var out = {};
    Object.keys(labels).forEach(function (k) { out[re.test(k) ? f(k) : k] = labels[k]; });
    return out;
  }

  // inputLabels are the input's labels from its outputs' (the API's): no
  // for, and an input label omen kept as exported_for (the output sets for
  // itself) under its own name again.
  function inputLabels(labels) {
    var out = {};
    Object.keys(labels).forEach(function (k) { if (k !== "for") out[k] = labels[k]; });
    return renamed(out, /^(exported_)+for$/, function (k) { return k.slice("exported_".length); });
  }

  // exactly renders labels as matchers that select the series with these
  // labels alone: equality matchers, and an empty one for each name of
  // others (label names of the series beside it, from /api/v1/labels)
  // that labels lack. Equality matchers alone also match every series
  // with more labels: {job="api"} fetched all of its 200 siblings
  // {job="api", instance="..."} as well (38.9 MB over 24 h) to draw one.
  // Names in own are the series' own beyond labels (a forecast's horizon).
  function exactly(labels, others, own) {
    var absent = (others || []).filter(function (k) {
      return k !== "__name__" && !(k in labels) && !(own && own[k]);
    }).sort().map(function (k) { return labelName(k) + '=""'; });
    return matchers(labels).concat(absent);
  }

  // The input's selector, and its values. A counter is scored as a
  // per-second rate between samples, and its band is one: irate shows the
  // same.
  function inputSelector(labels, others) {
    return "{" + ["__name__=" + lit(labels["for"])].concat(exactly(inputLabels(labels), others)).join(", ") + "}";
  }
  function inputQuery(labels, counter, others) {
    var sel = inputSelector(labels, others);
    return counter ? "irate(" + sel + "[5m])" : sel;
  }

  function outputSelector(labels, names, others, own) {
    return "{" + ["__name__=~" + lit(names.join("|"))].concat(exactly(labels, others, own)).join(", ") + "}";
  }

  // The forecasts carry the horizon label themselves: an input's own
  // horizon is on them as exported_horizon.
  function forecastSelector(labels, names, others) {
    return outputSelector(renamed(labels, /^(exported_)*horizon$/, function (k) { return "exported_" + k; }), names, others, { horizon: true });
  }

  var BAND = ["yhat", "yhat_lower", "yhat_upper", "anomaly_score"];
  var FORECASTS = ["forecast", "forecast_lower", "forecast_upper"];

  // A filter typed as job="api" is taken as the selector {job="api"}; a
  // metric name, with or without braces, and a selector in braces stay.
  function normalizeMatch(s) {
    s = s.trim();
    if (!s || s.charAt(0) === "{" || /^[a-zA-Z_:][a-zA-Z0-9_:]*(\s*\{[\s\S]*\})?$/.test(s)) return s;
    return "{" + s + "}";
  }

  function seriesKey(labels) {
    return Object.keys(labels).sort().map(function (k) { return k + "=" + lit(labels[k]); }).join(",");
  }

  // ---- formatting -------------------------------------------------------------

  function fmtNum(v) {
    if (v == null || !isFinite(v)) return "–";
    var a = Math.abs(v);
    if (a !== 0 && (a >= 1e6 || a < 1e-3)) return v.toExponential(2);
    if (a >= 1000) return v.toFixed(0);
    if (a >= 100) return v.toFixed(1);
    // Trailing zeros after a decimal point only: 99.97 rounds to "100".
    var p = v.toPrecision(3);
    return p.indexOf(".") >= 0 ? p.replace(/\.?0+$/, "") : p;
  }

  // fmtCount shows a count (series, requests) whole: fmtNum gave 640 series
  // as "640.0" and 1 234 567 as "1.23e+6".
  function fmtCount(v) {
    return v == null || !isFinite(v) ? "–" : String(Math.round(v));
  }

  // omen's clock: the browser's, moved by how far omen's was from it at
  // the latest syncClock. The ages below and the charts' "now" are on it,
  // not on a browser whose clock is off. Until omen has answered, the
  // browser's.
  var clockOffset = 0;
  function serverNow() {
    return Date.now() + clockOffset;
  }

  // syncClock asks omen its time, as Prometheus's own page does to warn of
  // a drift (the query time(), evaluated at omen's now), and takes it as
  // of the middle of the round trip. It read the Date header of omen's
  // answers instead, which a reverse proxy may replace with its own clock's
  // (nginx does) or leave out: behind one the page was on the proxy's
  // clock, or on the browser's. A POST, which caches do not answer from
  // store. If it fails the offset stays as it was.
  //
  // time() is a PromQL query: it waits for one of the engine's slots
  // (--query.max-concurrency, up to --query.timeout) behind other
  // queries, where the lists do not. A refresh waits for it CLOCK_WAIT_MS
  // at most, then loads the lists on the offset it has, and asks again
  // only once the answer is in (one at a time, as refresh). omen
  // evaluates time() when the query arrives, so a reading is off by up
  // to half its round trip: one that waited in that queue (a round trip
  // over CLOCK_WAIT_MS and twice the one of the offset in use) is not
  // taken over a better one.
  var CLOCK_WAIT_MS = 2000;
  var clockAsked = null; // the time() query in flight
  function syncClock() {
    if (!clockAsked) {
      var sent = Date.now();
      clockAsked = api("query", [["query", "time()"]], true).then(function (d) {
        var got = Date.now(), at = d && d.resultType === "scalar" ? Number(d.result[0]) * 1000 : NaN;
        if (!isFinite(at)) return;
        var rtt = got - sent;
        if (omen.clock && rtt > Math.max(CLOCK_WAIT_MS, 2 * omen.clock.rtt)) return;
        clockOffset = at - (sent + got) / 2;
        omen.clock = { offset: clockOffset, rtt: rtt };
      }).catch(function () { /* omen not ready: the lists say so */ }).then(function () { clockAsked = null; });
    }
    return Promise.race([clockAsked, new Promise(function (done) { setTimeout(done, CLOCK_WAIT_MS); })]);
  }

  // sampleAge is how long ago, in ms, the sample time iso of a listed
  // series was on that series' own clock: its sender's clock may be off
  // omen's (and the browser's) by minutes, so its latest sample
  // (a.timestamp) counts as received when omen received it (a.received,
  // omen's clock). NaN if iso is no time.
  function sampleAge(a, iso) {
    var t = Date.parse(iso), last = Date.parse(a.timestamp), got = Date.parse(a.received);
    if (!isFinite(last) || !isFinite(got)) return serverNow() - t;
    return last - t + (serverNow() - got);
  }

  // fmtAge shows an age in ms ("4m"), "" if it is no number.
  function fmtAge(ms) {
    if (!isFinite(ms)) return "";
    var s = Math.max(0, Math.round(ms / 1000));
    if (s < 90) return s + "s";
    if (s < 5400) return Math.round(s / 60) + "m";
    if (s < 172800) return (s / 3600).toFixed(1).replace(/\.0$/, "") + "h";
    return Math.round(s / 86400) + "d";
  }

  function fmtAgo(ms) {
    var a = fmtAge(ms);
    return a ? a + " ago" : "–";
  }

  // Times are the browser's local time, as Grafana's by default, and say
  // which zone that is: the API, alerts and logs are in UTC.
  var ZONE = { timeZoneName: "short" };

  function zoneName() {
    var z = Intl.DateTimeFormat([], ZONE).formatToParts(new Date()).filter(function (p) { return p.type === "timeZoneName"; });
    return z.length ? z[0].value : "local time";
  }

  function fmtTime(iso) {
    var d = new Date(iso);
    return isFinite(d.getTime()) ? d.toLocaleString([], ZONE) : String(iso);
  }

  // ---- anomalies list -----------------------------------------------------------

  // breakable splits a feature or metric name after its underscores, where
  // it may wrap (value_long_season_ago is wider than the column has room
  // for).
  function breakable(s) {
    var kids = [];
    s.split(/(?<=_)/).forEach(function (part, i) {
      if (i > 0) kids.push(el("wbr"));
      kids.push(part);
    });
    return kids;
  }

  function seriesLabel(labels) {
    // Each label is unbreakable, so long names wrap between labels. The
    // metric name wraps after its underscores: Prometheus's own
    // (prometheus_engine_query_duration_seconds_count) pushed the value
    // and the explanation past the panel's edge.
    var ms = matchers(labels, { "for": true });
    // A break after "{" first, so that a name that fits stays whole
    // ("go_" then "goroutines{" on the next line, else).
    var kids = [el("span", { class: "name" }, breakable((labels["for"] || "") + (ms.length ? "{" : "{}"))), el("wbr")];
    ms.forEach(function (m, i) {
      var eq = m.indexOf("=");
      kids.push(el("span", { class: "lab" }, [m.slice(0, eq + 1), el("span", { class: "lv", text: m.slice(eq + 1) }), i + 1 < ms.length ? "," : "}"]));
      if (i + 1 < ms.length) kids.push(" ");
    });
    return kids;
  }

  // Generations of the list's and the chart's requests: a response to an
  // older one (another filter, range or series picked meanwhile) is
  // dropped, not drawn over the newer.
  var listGen = 0, seriesGen = 0;

  function loadAnomalies() {
    var params = [["limit", String(state.limit)]];
    if (state.match) params.push(["match[]", state.match]);
    var gen = ++listGen;
    return api("anomalies", params).then(function (data) {
      if (gen !== listGen) return;
      var list = (data && data.anomalies) || [];
      // The API sorts already (ongoing incidents first, by their peak, then
      // the rest by score); sorting again keeps the page right if it ever
      // does not.
      list.sort(function (a, b) {
        if (!!a.active !== !!b.active) return a.active ? -1 : 1;
        return rank(b) - rank(a);
      });
      state.anomalies = list;
      renderAnomalies();
      omen.loads.anomalies++;
      setError("anomalies", null);
    }).catch(function (e) { if (gen === listGen) setError("anomalies", e); });
  }

  // rank orders incidents by their peak score and other series by their
  // current one.
  function rank(a) { return a.active && a.peak_score ? a.peak_score : a.score; }

  function renderAnomalies() {
    var tbody = $("anomalies").tBodies[0];
    var rows = [];
    var max = state.anomalies.reduce(function (m, a) { return Math.max(m, rank(a)); }, THRESHOLD * 2);
    state.anomalies.forEach(function (a) {
      var key = seriesKey(a.labels);
      // An ongoing incident stays hot while its latest sample scores lower
      // (the detector damps repeated alarms); the bar shows its peak.
      var hot = a.active || a.score > THRESHOLD;
      var bar = el("span", { class: "scorebar" + (hot ? " hot" : "") }, [el("i")]);
      bar.firstChild.style.width = Math.min(100, (100 * rank(a)) / max).toFixed(1) + "%";
      var title = hot ? "anomalous: score above 1" : "normal: score at most 1";
      if (a.active && a.peak_score) title = "ongoing incident: peak score " + fmtNum(a.peak_score) + ", latest " + fmtNum(a.score);
      var scoreCell = el("td", { class: "num score" + (hot ? " hot" : ""), title: title }, [fmtNum(a.active && a.peak_score ? a.peak_score : a.score), bar]);
      var link = el("button", { type: "button", class: "series-link", "aria-label": "Show chart of " + key }, seriesLabel(a.labels));
      var since = a.since ? el("span", { title: fmtTime(a.since), text: hot ? fmtAgo(sampleAge(a, a.since)) : "–" }) : "–";
      var sinceCell = el("td", null, [since]);
      if (a.ready === false) sinceCell.appendChild(el("span", { class: "badge", title: "the model is still learning this series", text: "warming" }));
      // omen lists a series whose samples stopped, as it was at its last
      // one, until Prometheus's lookback (5 m) has passed: without this
      // its row read as a series still sending (a pod that died in its
      // incident as an incident going on).
      var silent = sampleAge(a, a.timestamp);
      if (silent > SILENT_MS) {
        sinceCell.appendChild(el("span", { class: "badge silent", title: "no sample since " + fmtTime(a.timestamp) + "; omen drops the series from this list once none has come for 5 minutes", text: "no data for " + fmtAge(silent) }));
      }
      // The band under the value, not beside it, and free to wrap after
      // its dash: on one line the two made the column so wide that the
      // explanation went past the panel's edge.
      // A counter's value and band are its per-second rate, as scored:
      // without the unit, node_network_transmit_bytes_total read "0
      // (0–2515)" beside a counter of 3e11 bytes.
      var unit = a.counter ? "/s" : "";
      var expected = a.yhat != null ? ["(" + fmtNum(a.yhat_lower) + "–", el("wbr"), fmtNum(a.yhat_upper) + unit + ")"] : [];
      var valueCell = el("td", { class: "num", title: (a.counter ? "per-second rate of the counter; " : "") + "expected " + fmtNum(a.yhat) + unit },
        [a.value == null ? fmtNum(a.value) : fmtNum(a.value) + unit, el("span", { class: "expl band" }, expected)]);
      // A multivariate group names the member that contributed most to
      // its joint deviation, which may be called like a detector member.
      var why = a.feature === "joint" ? "multivariate group: its member " + (a.member || "–") + " moved most against the others"
        : (MEMBERS[a.member] ? MEMBERS[a.member] + ": " : "") + "detector " + (a.member || "–") + ", feature " + (a.feature || "–");
      var expl = el("td", { class: "expl", title: why }, [
        el("b", { text: a.member || "–" }), " / ", el("span", null, breakable(a.feature || "–")),
      ]);
      var tr = el("tr", { "data-key": key, "data-score": String(rank(a)), "data-active": String(!!a.active) }, [scoreCell, el("td", null, [link]), sinceCell, valueCell, expl]);
      if (key === state.selectedKey) tr.className = "selected";
      tr.addEventListener("click", function () { select(a); });
      rows.push(tr);
    });
    tbody.replaceChildren.apply(tbody, rows);
    renderEmpty();
  }

  // renderEmpty says why the list is empty. omen leaves out series that
  // have sent nothing for Prometheus's lookback, so an empty list beside
  // stored series and no ingest means the writes stopped, not that omen
  // has scored nothing yet (which it said, pointing at its warm-up).
  function renderEmpty() {
    var e = $("anomalies-empty");
    e.hidden = state.anomalies.length > 0;
    e.textContent = state.match ? "No series match " + state.match + "."
      : state.stored > 0 && state.ingest === 0 ? "No series has sent a sample in the last 5 minutes (ingest 0/s): is Prometheus's remote write reaching omen?"
      : "No series scored yet.";
  }

  // ---- status -------------------------------------------------------------------

  function loadStatus() {
    return api("status/omen").then(function (s) {
      var rejected = s.rejected || {};
      var rejectedTotal = Object.keys(rejected).reduce(function (n, k) { return n + rejected[k]; }, 0);
      var summary = [
        ["ingest", fmtNum(s.ingest_samples_per_second) + "/s"],
        ["stored", fmtCount(s.series_stored)],
        ["scored", fmtCount(s.series_scored)],
        ["warming", fmtCount(s.models_warming)],
        ["rejected", fmtCount(rejectedTotal)],
      ];
      $("summary").replaceChildren.apply($("summary"), summary.map(function (p) {
        return el("li", null, [p[0] + " ", el("b", { text: p[1] })]);
      }));
      var b = s.build || {};
      var rows = [
        ["Ingest rate", fmtNum(s.ingest_samples_per_second) + " samples/s"],
        ["Series stored", fmtCount(s.series_stored)],
        ["Series scored", fmtCount(s.series_scored)],
        ["Models warming", fmtCount(s.models_warming)],
      ];
      Object.keys(rejected).sort().forEach(function (k) {
        rows.push(["Rejected: " + k.replace(/_/g, " "), fmtCount(rejected[k])]);
      });
      if (!Object.keys(rejected).length) rows.push(["Rejected", "0"]);
      rows.push(["Version", b.version || "–"], ["Revision", (b.revision || "–").slice(0, 12)], ["Go", b.goVersion || "–"]);
      $("status-list").replaceChildren.apply($("status-list"), rows.map(function (r) {
        return el("div", null, [el("dt", { text: r[0] }), el("dd", { text: r[1] })]);
      }));
      $("config").textContent = s.config || "";
      state.stored = s.series_stored || 0;
      state.ingest = s.ingest_samples_per_second;
      renderEmpty();
      omen.loads.status++;
      setError("status", null);
    }).catch(function (e) { setError("status", e); });
  }

  // ---- series charts ---------------------------------------------------------------

  function select(a) {
    state.selected = a.labels;
    state.selectedCounter = a.counter;
    state.selectedKey = seriesKey(a.labels);
    state.lastSince = a.since || null;
    Array.prototype.forEach.call($("anomalies").tBodies[0].rows, function (tr) {
      tr.className = tr.getAttribute("data-key") === state.selectedKey ? "selected" : "";
    });
    $("series-title").replaceChildren.apply($("series-title"), seriesLabel(a.labels));
    $("series-hint").hidden = true;
    location.hash = "series=" + encodeURIComponent(JSON.stringify(a.labels));
    loadSeries();
  }

  // byName indexes a query result's series by metric name (and horizon on
  // the forecasts), keeping those with exactly the labels asked for:
  // equality matchers also match series with more labels. extra is how many
  // labels the result has beyond labels' (the forecasts' horizon).
  function byName(result, labels, extra) {
    var want = Object.keys(labels).length + (extra || 0);
    var out = {};
    (result || []).forEach(function (s) {
      var m = s.metric || {};
      var n = Object.keys(m).filter(function (k) { return k !== "__name__"; }).length;
      if (n !== want) return;
      out[(m.__name__ || "") + (extra && m.horizon ? "@" + m.horizon : "")] = s;
    });
    return out;
  }

  function num(v) { var f = parseFloat(v); return isFinite(f) ? f : null; }

  // seconds parses a Prometheus duration such as 5m or 1h30m (horizons are
  // configurable, so the page takes them from the horizon label).
  var UNITS = { ms: 0.001, s: 1, m: 60, h: 3600, d: 86400, w: 604800, y: 31536000 };
  function seconds(d) {
    var re = /(\d+)(ms|s|m|h|d|w|y)/g, total = 0, m, seen = "";
    while ((m = re.exec(d))) { total += Number(m[1]) * UNITS[m[2]]; seen += m[0]; }
    return seen && seen === d ? total : null;
  }

  function loadSeries() {
    var labels = state.selected;
    if (!labels) return Promise.resolve();
    var key = state.selectedKey, gen = ++seriesGen;
    var counter = state.selectedCounter;
    var group = false, derived = false;
    state.anomalies.forEach(function (a) {
      if (seriesKey(a.labels) === key) { group = a.feature === "joint"; derived = !!a.derived; }
    });
    if (counter == null) {
      // Restored from the address: the list says, else the name does.
      state.anomalies.forEach(function (a) { if (seriesKey(a.labels) === key) counter = a.counter; });
      if (counter == null) counter = /_(total|count|sum|bucket)$/.test(labels["for"] || "");
    }
    var now = serverNow() / 1000;
    var end = now;
    // A stale anomaly (data stopped arriving) is shown where it happened.
    // A sender ahead of omen's clock (by up to the 10 minutes omen
    // accepts) has its latest sample, and forecasts made at it, after
    // now: the chart ends there, so that they are drawn.
    var at = Date.parse(state.anomalies.reduce(function (t, a) { return seriesKey(a.labels) === key ? a.timestamp : t; }, null));
    if (isFinite(at) && at / 1000 < now - state.range / 2) end = at / 1000 + 600;
    else if (isFinite(at) && at / 1000 > now) end = at / 1000;
    var start = end - state.range;
    // The forecasts' own samples, each stored at the time of the sample
    // it was made at: those of the lookback (5 minutes) before the
    // series' latest sample, which a sender behind omen's clock stamps
    // minutes before the chart's end (an instant query at the end found
    // none for a sender 10 minutes behind).
    var fcWindow = 300 + (isFinite(at) ? Math.max(0, Math.ceil(end - at / 1000)) : 0);
    var step = Math.max(15, Math.ceil(state.range / 720));
    var rng = function (q) {
      return api("query_range", [["query", q], ["start", start.toFixed(3)], ["end", end.toFixed(3)], ["step", step + "s"]]);
    };
    $("series").setAttribute("data-state", "loading");
    // The label names of the series the selectors below match in the
    // chart's range, to leave out those with more labels (see exactly).
    // Without an answer (a proxy that passes only the page's other
    // calls) they are fetched and dropped by byName, as before.
    var names = api("labels", [["match[]", inputSelector(labels)], ["match[]", outputSelector(labels, BAND)],
      ["match[]", forecastSelector(labels, FORECASTS)], ["start", start.toFixed(3)], ["end", end.toFixed(3)]])
      .catch(function () { return []; });
    return names.then(function (others) {
      if (gen !== seriesGen) return null;
      return Promise.all([
        rng(inputQuery(labels, counter, others)),
        rng(outputSelector(labels, BAND, others)),
        api("query", [["query", forecastSelector(labels, FORECASTS, others) + "[" + fcWindow + "s]"], ["time", end.toFixed(3)]]),
        // The sample times of the band's values (its three series are
        // stored together), see buildData.
        rng("timestamp(" + outputSelector(labels, ["yhat_lower"], others) + ")"),
        // The score's raw samples in the chart's range, see buildData.
        api("query", [["query", outputSelector(labels, ["anomaly_score"], others) + "[" + state.range + "s]"], ["time", end.toFixed(3)]]),
      ]);
    }).then(function (res) {
      if (!res) return;
      if (gen !== seriesGen) return; // another series or range was picked meanwhile
      var in0 = byName(res[0].result, inputLabels(labels));
      var input = in0[counter ? "" : labels["for"]];
      var out = byName(res[1].result, labels);
      var fc = byName(res[2].result, labels, 1);
      var d = buildData(input, out, fc, step, byName(res[3].result, labels)[""], byName(res[4].result, labels).anomaly_score);
      d.group = group;
      d.derived = derived;
      d.counter = counter;
      draw(d, start, end);
      omen.loads.series++;
      setError("series", null);
    }).catch(function (e) {
      if (gen !== seriesGen) return;
      $("series").setAttribute("data-state", "error");
      setError("series", e);
    });
  }

  // buildData aligns every series on one time axis, as uPlot wants: the
  // range queries share the step grid, the forecast cone adds the time
  // the forecasts were made and the times they are for.
  //
  // The band (yhat, yhat_lower, yhat_upper) is drawn through its values at
  // their sample times (bandAt: the range query of their timestamps), not
  // at the step grid's, and so is the score, through its raw samples
  // (scoreRaw: a range selector's answer; the range query's are its gaps). omen stores a series' outputs a minute apart
  // (--output.tsdb-interval), and a range query at a finer step repeats
  // each until the next: the band was drawn as a staircase whose rises
  // came up to a minute after the values they belong to, its edges late
  // on every slope (a rising value ran into the upper edge before each
  // rise). The expected value is a smooth curve: the line through its
  // stored points is its best picture between them.
  //
  // The score's step grid lost more: scores above 1 are stored at every
  // sample (15 s apart at Prometheus's usual scrape), so past a 15 s step
  // (ranges over 3 h) only the one before each grid time was drawn. A
  // single-sample spike showed at 24 h (a 120 s step) only if a grid time
  // fell within the 15 s after it, else neither the line nor the shading
  // showed it; one that did was drawn up to a step late, its rise begun up
  // to a step early.
  function buildData(input, out, fc, step, bandAt, scoreRaw) {
    var cols = {}; // name -> {t: v}
    var times = {}, grid = {};
    function put(name, t, v) {
      (cols[name] = cols[name] || {})[t] = v;
      times[t] = true;
    }
    function putRange(name, s) {
      (s ? s.values : []).forEach(function (p) { put(name, p[0], num(p[1])); grid[p[0]] = true; });
    }
    var sampleT = {}; // grid time -> the band's sample time there
    (bandAt ? bandAt.values : []).forEach(function (p) { sampleT[p[0]] = num(p[1]); });
    // Drawn through their sample times: their grid times without a
    // value are their gaps.
    var band = { yhat: true, yhat_lower: true, yhat_upper: true };
    if (scoreRaw) band.anomaly_score = true;
    function putBand(name, s) {
      (s ? s.values : []).forEach(function (p) {
        var t = sampleT[p[0]];
        put(name, t != null ? t : p[0], num(p[1]));
        grid[p[0]] = true;
      });
    }
    putRange("value", input);
    ["yhat", "yhat_lower", "yhat_upper"].forEach(function (n) { putBand(n, out[n]); });
    if (scoreRaw) {
      scoreRaw.values.forEach(function (p) { put("anomaly_score", p[0], num(p[1])); });
      ((out.anomaly_score && out.anomaly_score.values) || []).forEach(function (p) { grid[p[0]] = true; });
    } else {
      putRange("anomaly_score", out.anomaly_score);
    }
    // A time of the step grid where the band has no value is a gap in it.
    Object.keys(band).forEach(function (n) {
      var have = {};
      ((out[n] && out[n].values) || []).forEach(function (p) { have[p[0]] = true; });
      if (!cols[n]) return;
      Object.keys(grid).forEach(function (g) { if (!have[g] && !(g in cols[n])) cols[n][g] = null; });
    });

    // A forecast stored at t (the sample it was made at) for horizon h is
    // for t+h: each horizon's latest is plotted there, with its interval
    // stored beside it. They were plotted at the chart's end plus h, a
    // forecast interval and a scrape interval late at most, minutes late
    // for a sender whose clock is behind omen's.
    var cone = [], made = null;
    Object.keys(fc).forEach(function (k) {
      var h = k.slice("forecast@".length), d = seconds(h), vs = fc[k].values || [];
      if (k.indexOf("forecast@") !== 0 || d === null || !vs.length) return;
      var t = vs[vs.length - 1][0];
      cone.push({ t: t + d, f: num(vs[vs.length - 1][1]), lo: sampleAt(fc["forecast_lower@" + h], t), hi: sampleAt(fc["forecast_upper@" + h], t) });
      if (made === null || t > made) made = t;
    });
    cone.sort(function (a, b) { return a.t - b.t; });
    // The cone starts on the value's line at the time the newest
    // forecasts were made.
    var v0 = cone.length ? lineAt(cols.value || {}, made, step) : null;
    if (v0 !== null) {
      put("forecast", made, v0); put("forecast_lower", made, v0); put("forecast_upper", made, v0);
    }
    cone.forEach(function (c) {
      put("forecast", c.t, c.f); put("forecast_lower", c.t, c.lo); put("forecast_upper", c.t, c.hi);
    });

    var xs = Object.keys(times).map(Number).sort(function (a, b) { return a - b; });
    // A time of the step grid without a value is a gap (null); the
    // cone's times between the grid's are undefined, which uPlot draws
    // the lines across (null there would break the value's line and the
    // band where the cone starts), as are the band's between its sample
    // times (its gaps are marked above).
    function col(name) {
      var m = cols[name] || {};
      return xs.map(function (t) { return t in m ? m[t] : grid[t] && !band[name] ? null : undefined; });
    }
    function points(name) {
      var m = cols[name] || {};
      return Object.keys(m).filter(function (t) { return m[t] != null; }).length;
    }
    return {
      xs: xs,
      main: [xs, col("value"), col("yhat"), col("yhat_lower"), col("yhat_upper"), col("forecast"), col("forecast_lower"), col("forecast_upper")],
      score: [xs, col("anomaly_score"), xs.map(function () { return THRESHOLD; })],
      counts: {
        value: Object.keys(cols.value || {}).length,
        band: points("yhat_lower"),
        score: Object.keys(cols.anomaly_score || {}).length,
        cone: cone.length,
      },
      step: step,
    };
  }

  // sampleAt is the value of the raw series s at its sample time t, null
  // if it has none there.
  function sampleAt(s, t) {
    var vs = (s && s.values) || [];
    for (var i = vs.length - 1; i >= 0; i--) if (vs[i][0] === t) return num(vs[i][1]);
    return null;
  }

  // lineAt is the line through the points col ({t: v}, a step apart) at
  // t, as the chart draws it: between the points either side, else the
  // one within a step; null if there is none (a gap).
  function lineAt(col, t, step) {
    var a = null, b = null;
    Object.keys(col).forEach(function (k) {
      var x = Number(k);
      if (col[k] == null) return;
      if (x <= t && (a === null || x > a)) a = x;
      if (x >= t && (b === null || x < b)) b = x;
    });
    var near = function (x) { return x !== null && Math.abs(x - t) <= step * 1.001; };
    if (near(a) && near(b)) return a === b ? col[a] : col[a] + (col[b] - col[a]) * (t - a) / (b - a);
    if (near(a)) return col[a];
    if (near(b)) return col[b];
    return null;
  }

  // anomalyMarks shades the spans where the score is above the threshold and
  // draws a line at the time the current anomaly began.
  function anomalyMarks(u) {
    var d = omen.data;
    if (!d) return;
    var ctx = u.ctx, top = u.bbox.top, h = u.bbox.height;
    ctx.save();
    ctx.fillStyle = C.anomaly;
    // The score's points: its samples' times and its gaps (null); the
    // other series' times between them (undefined) neither end nor break
    // a span.
    var sc = d.score[1], half = (d.step / 2), xs = [], ys = [];
    d.xs.forEach(function (x, i) { if (sc[i] !== undefined) { xs.push(x); ys.push(sc[i]); } });
    for (var i = 0; i < xs.length; i++) {
      if (ys[i] == null || ys[i] <= THRESHOLD) continue;
      var j = i;
      while (j + 1 < xs.length && (ys[j + 1] == null ? false : ys[j + 1] > THRESHOLD)) j++;
      var x0 = u.valToPos(xs[i] - half, "x", true), x1 = u.valToPos(xs[j] + half, "x", true);
      // A one-sample anomaly is under a pixel wide over hours; widened to
      // 8 px about its sample it stays visible on both sides of the score's
      // spike and the dashed start line drawn over it (at 4 px from the
      // left edge those two hid all but one or two columns of it).
      var minW = 8 * devicePixelRatio;
      if (x1 - x0 < minW) {
        var mid = (x0 + x1) / 2;
        x0 = mid - minW / 2; x1 = mid + minW / 2;
      }
      ctx.fillRect(x0, top, x1 - x0, h);
      i = j;
    }
    var since = Date.parse(state.lastSince);
    if (isFinite(since)) {
      var x = u.valToPos(since / 1000, "x", true);
      if (x >= u.bbox.left && x <= u.bbox.left + u.bbox.width) {
        ctx.strokeStyle = C.since;
        ctx.lineWidth = 2 * devicePixelRatio;
        ctx.setLineDash([4 * devicePixelRatio, 3 * devicePixelRatio]);
        ctx.beginPath(); ctx.moveTo(x, top); ctx.lineTo(x, top + h); ctx.stroke();
      }
    }
    ctx.restore();
  }

  function chartWidth() { return Math.max(320, $("series").clientWidth - 26); }
  // Heights follow the window so both charts fit on a laptop screen.
  function clamp(v, lo, hi) { return Math.round(Math.min(hi, Math.max(lo, v))); }
  function mainHeight() { return clamp(window.innerHeight * 0.36, 200, 320); }
  function scoreHeight() { return clamp(window.innerHeight * 0.17, 110, 160); }

  // valueAxisSize fits the value axis to its widest tick label: at a fixed
  // 60 px, ticks of a series in the millions ran into the axis's label.
  // The score chart's axis takes the same size (scoreAxisSize), so that
  // the two charts' time axes stay aligned.
  var MIN_AXIS = 60;
  function valueAxisSize(u, values, i, cycle) {
    var ax = u.axes[i];
    if (cycle > 1) return ax._size; // uPlot's layout converges from here
    var widest = 0;
    u.ctx.save();
    u.ctx.font = Array.isArray(ax.font) ? ax.font[0] : ax.font;
    (values || []).forEach(function (v) { widest = Math.max(widest, u.ctx.measureText(String(v)).width / devicePixelRatio); });
    u.ctx.restore();
    return Math.max(MIN_AXIS, Math.ceil(ax.ticks.size + ax.gap + widest + 1));
  }
  function scoreAxisSize() {
    var m = omen.charts.main;
    return m && m.axes[1]._size ? m.axes[1]._size : MIN_AXIS;
  }

  function draw(d, start, end) {
    omen.data = d;
    var main = omen.charts.main, score = omen.charts.score;
    var xScale = { time: true, min: start, max: d.xs.length ? Math.max(end, d.xs[d.xs.length - 1]) : end };
    if (!main) {
      var sync = uPlot.sync("omen");
      var cursor = { sync: { key: sync.key }, focus: { prox: 16 } };
      main = omen.charts.main = new uPlot({
        width: chartWidth(), height: mainHeight(), cursor: cursor,
        scales: { x: { time: true } },
        series: [
          {},
          { label: "value", stroke: C.value, width: 1.5 },
          { label: "expected (yhat, band)", stroke: C.yhat, width: 1.5, dash: [6, 4] },
          { label: "yhat_lower", stroke: C.bandEdge, width: 1 },
          { label: "yhat_upper", stroke: C.bandEdge, width: 1 },
          { label: "forecast (interval)", stroke: C.forecast, width: 2, spanGaps: true, points: { show: true, size: 5 } },
          { label: "forecast_lower", stroke: C.coneEdge, width: 1, spanGaps: true },
          { label: "forecast_upper", stroke: C.coneEdge, width: 1, spanGaps: true },
        ],
        bands: [
          { series: [4, 3], fill: C.band },
          { series: [7, 6], fill: C.cone },
        ],
        // Same axis sizes in both charts keep their time axes aligned.
        axes: [{ space: 90 }, { size: valueAxisSize, label: "value", labelSize: 16 }],
        hooks: { drawClear: [anomalyMarks] },
      }, d.main, $("chart-main"));
      score = omen.charts.score = new uPlot({
        width: chartWidth(), height: scoreHeight(), cursor: cursor,
        scales: { x: { time: true }, y: { range: function (u, min, max) { return [0, Math.max(2, (max || 0) * 1.1)]; } } },
        series: [
          {},
          { label: "anomaly score", stroke: C.score, width: 1.5, fill: "rgba(106,61,154,0.08)" },
          { label: "threshold", stroke: C.threshold, width: 1.5, dash: [5, 4], points: { show: false } },
        ],
        axes: [{ space: 90 }, { size: scoreAxisSize, label: "score", labelSize: 16 }],
        hooks: { drawClear: [anomalyMarks] },
      }, d.score, $("chart-score"));
    } else {
      main.setData(d.main, false);
      score.setData(d.score, false);
    }
    main.setScale("x", { min: xScale.min, max: xScale.max });
    score.setScale("x", { min: xScale.min, max: xScale.max });
    var c = d.counts;
    $("series-note").textContent = (d.group
      ? "A multivariate group: its score is its members' joint deviation; it has no value, expected band or forecast of its own (chart the members' series for those)"
      // A derived input's values are evaluated, not stored: "0 samples"
      // beside its band read as an input that never sent one.
      // A counter is charted, as scored, as its per-second rate: the
      // value axis read 100 beside a counter's name.
      : (d.counter ? "A counter, charted as its per-second rate (irate), as it is scored: " : "") +
        (d.derived && !c.value
        ? "A derived input: its values are evaluated, not stored, so only its outputs are charted: "
        : c.value + " samples, ") + c.band + " with an expected band, " +
        (c.cone ? "forecast " + c.cone + " horizons ahead" : "no forecast yet")) +
      ". Shaded: score above 1; dashed line: the anomaly's start. Times in " + zoneName() + ".";
    var sec = $("series");
    sec.setAttribute("data-state", "ready");
    sec.setAttribute("data-points", String(c.value));
    sec.setAttribute("data-band-points", String(c.band));
    sec.setAttribute("data-score-points", String(c.score));
    sec.setAttribute("data-cone-points", String(c.cone));
  }

  // ---- wiring ---------------------------------------------------------------------

  // refresh reloads everything; a tick that finds the last refresh still
  // running skips, so a slow server is not sent a growing queue.
  var refreshing = false;
  omen.busy = function () { return refreshing; };
  function refresh() {
    if (refreshing) return Promise.resolve();
    refreshing = true;
    return syncClock().then(function () {
      var p = [loadAnomalies(), loadStatus()];
      if (state.selected) p.push(loadSeries());
      return Promise.all(p);
    }).then(function () {
      refreshing = false;
      $("updated").textContent = "updated " + new Date().toLocaleTimeString([], ZONE);
    });
  }

  function restoreHash() {
    var m = /(?:^#|&)series=([^&]*)/.exec(location.hash);
    if (!m) return;
    try {
      var labels = JSON.parse(decodeURIComponent(m[1]));
      if (labels && typeof labels === "object" && labels["for"]) {
        select({ labels: labels, since: null });
      }
    } catch (e) { /* a hand-edited hash: ignore */ }
  }

  function setRange(seconds) {
    state.range = seconds;
    Array.prototype.forEach.call(document.querySelectorAll(".ranges button"), function (b) {
      b.setAttribute("aria-pressed", String(Number(b.getAttribute("data-range")) === seconds));
    });
  }

  $("filter").addEventListener("submit", function (ev) {
    ev.preventDefault();
    state.match = normalizeMatch($("match").value);
    state.limit = Number($("limit").value) || 25;
    loadAnomalies();
  });
  Array.prototype.forEach.call(document.querySelectorAll(".ranges button"), function (b) {
    b.addEventListener("click", function () { setRange(Number(b.getAttribute("data-range"))); loadSeries(); });
  });
  $("live").addEventListener("change", function () { state.live = $("live").checked; });
  window.addEventListener("resize", function () {
    var w = chartWidth();
    if (omen.charts.main) omen.charts.main.setSize({ width: w, height: mainHeight() });
    if (omen.charts.score) omen.charts.score.setSize({ width: w, height: scoreHeight() });
  });

  setRange(state.range);
  refresh().then(function () {
    if (!state.selected) {
      restoreHash();
      // Keep a restored series' "since" once the list knows it.
      state.anomalies.forEach(function (a) { if (seriesKey(a.labels) === state.selectedKey) state.lastSince = a.since; });
    }
  });
  setInterval(function () { if (state.live && !document.hidden) refresh(); }, REFRESH_MS);
})();
