#!/usr/bin/env bash
# bench-nab.sh NAB_DIR: score NAB with `omen backtest` and NAB's rules.
#
# Runs bin/omen backtest over NAB_DIR/data (one configuration, the defaults,
# for every file), maps each anomaly_score s to s/(1+s) (monotone, into
# [0,1) as NAB wants; the threshold search is unaffected), and scores the
# result with NAB_DIR/nabscore.py: the three profiles over the whole corpus,
# then each category at the corpus-wide threshold of each profile.
# Outputs go to ${OUT:-./out/bench-nab}, which is gitignored.
set -euo pipefail

nab=${1:?usage: bench-nab.sh NAB_DIR}
out=${OUT:-./out/bench-nab}
bin=${OMEN:-./bin/omen}
workers=${WORKERS:-2}
members=${MEMBERS:-0} # detector member bit set, for the ablation table; 0 = the default set

[ -x "$bin" ] || { echo "bench-nab: $bin not found; run make build" >&2; exit 1; }
[ -f "$nab/nabscore.py" ] || { echo "bench-nab: $nab/nabscore.py not found" >&2; exit 1; }

rm -rf "$out"
mkdir -p "$out"
echo "bench-nab: omen backtest over $nab/data (workers=$workers)" >&2
status=0
"$bin" backtest --input "$nab/data" --output "$out/raw" --workers "$workers" --detect.members "$members" 2>"$out/backtest.log" || status=$?
if [ "$status" -ne 0 ]; then
	echo "bench-nab: backtest reported errors (files it could not score count as no detections):" >&2
	grep -v 'level=INFO' "$out/backtest.log" >&2 || true
fi

python3 - "$out/raw" "$out/results" <<'PY'
import csv, os, sys
src, dst = sys.argv[1], sys.argv[2]
for root, _, files in os.walk(src):
    for f in files:
        if not f.endswith('.csv'):
            continue
        p = os.path.join(root, f)
        q = os.path.join(dst, os.path.relpath(p, src))
        os.makedirs(os.path.dirname(q), exist_ok=True)
        with open(p, newline='') as fi, open(q, 'w', newline='') as fo:
            r = csv.reader(fi)
            w = csv.writer(fo)
            h = next(r)
            i = h.index('anomaly_score')
            w.writerow(['timestamp', 'value', 'anomaly_score'])
            for row in r:
                s = float(row[i])
                w.writerow([row[0], row[1], repr(s / (1 + s))])
PY

python3 "$nab/nabscore.py" "$out/results" --missing-as-null --json >"$out/scores.json"
python3 "$nab/nabscore.py" "$out/results" --missing-as-null | tee "$out/scores.txt"

# Per category, at the corpus-wide threshold of each profile.
python3 - "$nab" "$out" <<'PY'
import json, os, subprocess, sys
nab, out = sys.argv[1], sys.argv[2]
full = json.load(open(os.path.join(out, 'scores.json')))['profiles']
profiles = ['standard', 'reward_low_FP_rate', 'reward_low_FN_rate']
thr = [a for p in profiles for a in ('--threshold', '%s=%r' % (p, full[p]['threshold']))]
cats = sorted(d for d in os.listdir(os.path.join(nab, 'data')) if os.path.isdir(os.path.join(nab, 'data', d)))
print()
print('per category, at the corpus-wide thresholds (NaN: no windows)')
print('%-24s %9s %9s %9s %4s %4s %5s' % ('category', 'standard', 'low_FP', 'low_FN', 'TP', 'FN', 'FP'))
for c in cats:
    r = subprocess.run([sys.executable, os.path.join(nab, 'nabscore.py'), os.path.join(out, 'results'),
                        '--missing-as-null', '--json', '--files', c] + thr, capture_output=True, text=True, check=True)
    p = json.loads(r.stdout)['profiles']
    f = lambda k: p[k]['score'] if p[k]['score'] is not None else float('nan')
    sys.stdout.flush()
    s = p['standard']
    print('%-24s %9.2f %9.2f %9.2f %4d %4d %5d' % (c, f('standard'), f('reward_low_FP_rate'), f('reward_low_FN_rate'), s['tp'], s['fn'], s['fp']))
PY
exit 0
