#!/usr/bin/env bash
# Upgrades and rollbacks across real omen releases: for each older commit O,
# one data directory goes O -> HEAD (upgrade) -> O (rollback) -> HEAD (forward
# again), each run stopped by SIGTERM, with `omen loadgen` writing SERIES
# series (HISTORY of 15 s history first, then LIVE of live samples each run)
# and a configuration with forecast horizons. Each run prints one row of the
# matrix: exit status, seconds to /-/ready, the restore line of its log, the
# history samples replayed into models (omen_warm_start_samples_total: a
# re-warm), the samples a restored model caught up on, the input samples the
# TSDB answers against those acknowledged so far, and output samples the
# TSDB refused. Then a rollback killed before a snapshot of its own, and
# HEAD again, which must catch up what it took. Exits 1 if a run crashed,
# lost an acknowledged sample, had an output refused or logged an error.
#
#   bash scripts/upgrade-rollback.sh [OLD_COMMIT...]   (make upgrade-rollback)
#
# Older builds come from git history (a worktree each, `go build`, no
# network with a warm module cache); without arguments, the last commits
# before 2026-12-06, -04 and -03 00:00 UTC. PORT (28300), OUT and the sizes
# below may be set from the environment. Takes ~3 minutes an old commit (LIVE=45s).
# No -e: a failed probe (curl, grep) is a "?" or 0 in the row, not the end of the run.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
PORT=${PORT:-28300}
OUT=${OUT:-$(mktemp -d /tmp/omen-upgrade.XXXXXX)}
SERIES=${SERIES:-300}
HISTORY=${HISTORY:-2h}
LIVE=${LIVE:-45s}
mkdir -p "$OUT"
if [ $# -eq 0 ]; then
	set -- $(for d in '2026-12-06 00:00' '2026-12-04 00:00' '2026-12-03 00:00'; do git log --before="$d" -1 --format=%h; done)
fi

build() { # build <commit> <binary>
	[ -x "$2" ] && return 0
	local wt="$OUT/wt-$1"
	git worktree add -q --detach "$wt" "$1" || return 1
	(cd "$wt" && go build -o "$2" ./cmd/omen)
	local rc=$?
	git worktree remove --force "$wt"
	return $rc
}
HEAD_BIN="$OUT/omen-head"
go build -o "$HEAD_BIN" ./cmd/omen || exit 1

HORIZONS=${HORIZONS:-[5m, 30m, 1h]}
cat >"$OUT/omen.yml" <<EOF
defaults:
  forecast_horizons: $HORIZONS
EOF

URL="http://127.0.0.1:$PORT"
acked=0
hist_s=$(( $(echo "$HISTORY" | sed 's/h$/*3600/;s/m$/*60/;s/s$//') ))
metric() { # metric <name>: its sum on /metrics, 0 when absent
	curl -sf "$URL/metrics" | awk -v n="$1" '$1==n || index($1, n"{")==1 {s+=$2} END {printf "%d", s}'
}
stored() { # input samples the TSDB answers, summed by name (count_over_time drops the name, and the
	# families share label sets); every loadgen series has a cluster label, no output has one without for
	local n total=0 c
	for n in $(curl -sfG "$URL/api/v1/label/__name__/values" --data-urlencode 'match[]={cluster=~".+",for=""}' |
		grep -oE '"[A-Za-z_:][A-Za-z0-9_:]*"' | tr -d '"' | grep -vxE 'status|success|data'); do
		c=$(curl -sfG "$URL/api/v1/query" --data-urlencode "query=sum(count_over_time($n{for=\"\"}[1d]))" |
			sed -n 's/.*"value":\[[^,]*,"\([0-9]*\)".*/\1/p')
		total=$((total + ${c:-0}))
	done
	echo "$total"
}
load() { # load <loadgen args...>: adds what was accepted to acked
	local n
	n=$("$HEAD_BIN" loadgen --url="$URL/api/v1/write" --series="$SERIES" --concurrency=2 --no-warmup "$@" 2>>"$OUT/loadgen.log" |
		sed -n 's/.*"samples_accepted": *\([0-9]*\).*/\1/p' | tail -1)
	acked=$((acked + ${n:-0}))
}

run() { # run <label> <binary> <data dir> [history | kill]: history first, or stopped by SIGKILL
	local label=$1 bin=$2 data=$3 log="$OUT/$1.log" t0 ready rc
	t0=$(date +%s.%N)
	"$bin" serve --web.listen-address="127.0.0.1:$PORT" --storage.tsdb.path="$data" \
		--config.file="$OUT/omen.yml" --snapshot.interval=2m >"$log" 2>&1 &
	local pid=$!
	ready=timeout
	for _ in $(seq 1 600); do
		if curl -sf "$URL/-/ready" >/dev/null 2>&1; then
			ready=$(echo "$(date +%s.%N) - $t0" | bc | xargs printf '%.1f')
			break
		fi
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.2
	done
	if [ "${4:-}" = history ]; then
		load --sample-interval=15s --backdate="$HISTORY" --rounds=$((hist_s / 15))
	fi
	local before_live
	before_live=$(stored || echo "?")
	load --rate=$((SERIES / 5)) --duration="$LIVE"
	sleep 2
	local got warm warming catchup refused
	got=$(stored || echo "?")
	warm=$(metric omen_warm_start_samples_total)
	warming=$(metric omen_models_warming)
	catchup=$(metric omen_restore_catch_up_samples_total)
	refused=$(metric omen_output_append_failures_total)
	if [ "${4:-}" = kill ]; then kill -KILL "$pid"; else kill -TERM "$pid"; fi
	rc=0
	wait "$pid" 2>/dev/null || rc=$?
	local line restore
	line=$(grep -m1 -E 'msg="?(Model snapshot (restored|unusable)|No model snapshot)' "$log" || true)
	case "$line" in
	*"are of a release this one does not read"*) restore="restored-in-part" ;;
	*"Model snapshot restored"*) restore=restored ;;
	*"Model snapshot unusable"*) restore=refused ;;
	*"No model snapshot"*) restore=none ;;
	*) restore="?" ;;
	esac
	restore="$restore $(echo "$line" | grep -oE ' (series|current|unreadable)=[0-9]+| err="[^"]*"' | tr -d '\n' || true)"
	local panics
	panics=$(grep -c -E '^panic|fatal error|level=ERROR' "$log" || true)
	printf '%-22s exit=%-3s ready=%-6s stored_at_start=%-8s stored=%-8s acked=%-8s warm_samples=%-7s catch_up=%-5s warming=%-4s out_refused=%-3s errors=%-2s %s\n' \
		"$label" "$rc" "$ready" "$before_live" "$got" "$acked" "$warm" "$catchup" "$warming" "$refused" "$panics" "$restore" | tee -a "$OUT/matrix.txt"
	# What must hold: a clean stop (but for the kill), every acknowledged
	# sample stored, no output refused, nothing logged as an error.
	local want_rc=0
	[ "${4:-}" = kill ] && want_rc=137
	if [ "$rc" != "$want_rc" ] || [ "$got" != "$acked" ] || [ "$refused" != 0 ] || [ "$panics" != 0 ] || [ "$ready" = timeout ]; then
		echo "FAIL: $label" | tee -a "$OUT/matrix.txt"
		failed=1
	fi
	last_catchup=$catchup
}
failed=0

for o in "$@"; do
	bin="$OUT/omen-$o"
	build "$o" "$bin" || exit 1
	data="$OUT/data-$o"
	rm -rf "$data"
	acked=0
	run "$o-1-old" "$bin" "$data" history
	run "$o-2-upgrade" "$HEAD_BIN" "$data"
	run "$o-3-rollback" "$bin" "$data"
	run "$o-4-forward" "$HEAD_BIN" "$data"
	# A rollback whose run is killed before a snapshot of its own (the
	# old build does not know the graceful stop's current mark, and
	# leaves it): the forward start must catch up what that run took.
	run "$o-5-rollback-killed" "$bin" "$data" kill
	run "$o-6-forward" "$HEAD_BIN" "$data"
	if [ "$last_catchup" = 0 ]; then
		echo "FAIL: $o-6-forward caught up nothing the killed rollback took" | tee -a "$OUT/matrix.txt"
		failed=1
	fi
	ls "$data" >"$OUT/$o.files"
done
echo "matrix: $OUT/matrix.txt; logs: $OUT/*.log"
exit $failed
