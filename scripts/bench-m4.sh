#!/usr/bin/env bash
# bench-m4.sh DATA_DIR: forecast the M4 Hourly series with bin/omen and score
# them with the organisers' metrics (DATA_DIR/m4score.py).
#
# Without DATA_DIR/Hourly-test.csv the scorer holds out the last 48 training
# values of every series (the self-split), so omen gets each series minus
# those 48 values; with the official test file it gets the whole training
# part. Besides sMAPE, MASE and OWA it prints the pooled coverage of the 95%
# prediction intervals: the share of the 414×48 actuals inside them.
#
# Work files go to out/bench-m4 (gitignored). Usage (from the repo root):
#   make bench-m4            # = make build && bash scripts/bench-m4.sh ../shared/m4hourly
set -euo pipefail

data=${1:?usage: bench-m4.sh DATA_DIR}
bin=${OMEN_BIN:-bin/omen}
work=${OMEN_BENCH_DIR:-out/bench-m4}
workers=${OMEN_WORKERS:-2}
horizon=48

[ -x "$bin" ] || { echo "bench-m4: $bin not found; run make build" >&2; exit 1; }
[ -f "$data/Hourly-train.csv" ] || { echo "bench-m4: $data/Hourly-train.csv not found" >&2; exit 1; }

rm -rf "$work"
mkdir -p "$work/input" "$work/output"

split=self
[ -f "$data/Hourly-test.csv" ] && split=official

# 1. One CSV per series, hourly timestamps from a fixed start (the M4 files
#    have none), holding what the forecaster may see.
python3 - "$data/Hourly-train.csv" "$work/input" "$split" "$horizon" <<'PY'
import csv, os, sys
train, outdir, split, h = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
start = 1577836800  # 2020-01-01T00:00:00Z
n = 0
with open(train, newline="") as fh:
    r = csv.reader(fh)
    next(r)
    for row in r:
        if not row:
            continue
        sid = row[0].strip()
        vals = []
        for c in row[1:]:
            c = c.strip()
            if c == "" or c.upper() == "NA":
                break
            vals.append(c)
        if split == "self":
            vals = vals[:-h]
        with open(os.path.join(outdir, sid + ".csv"), "w") as out:
            out.write("timestamp,value\n")
            for i, v in enumerate(vals):
                out.write(f"{start + 3600 * i},{v}\n")
        n += 1
print(f"bench-m4: wrote {n} series ({split} split)", file=sys.stderr)
PY

# 2. Forecast.
t0=$(date +%s.%N)
"$bin" forecast --input "$work/input" --output "$work/output" --steps "$horizon" --workers "$workers"
t1=$(date +%s.%N)
echo "bench-m4: forecast of all series took $(python3 -c "print(f'{$t1-$t0:.1f}')") s with $workers workers"

# 3. id,F1..F48 and the pooled interval coverage.
python3 - "$data" "$work" "$split" "$horizon" <<'PY'
import csv, os, sys
data, work, split, h = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])

def read_wide(path):
    out = {}
    with open(path, newline="") as fh:
        r = csv.reader(fh)
        next(r)
        for row in r:
            if not row:
                continue
            vals = []
            for c in row[1:]:
                c = c.strip()
                if c == "" or c.upper() == "NA":
                    break
                vals.append(float(c))
            out[row[0].strip()] = vals
    return out

train = read_wide(os.path.join(data, "Hourly-train.csv"))
if split == "self":
    actual = {k: v[-h:] for k, v in train.items()}
else:
    actual = read_wide(os.path.join(data, "Hourly-test.csv"))
inside = total = 0
with open(os.path.join(work, "forecasts.csv"), "w", newline="") as fh:
    w = csv.writer(fh, lineterminator="\n")
    w.writerow(["id"] + [f"F{j}" for j in range(1, h + 1)])
    for sid in train:
        with open(os.path.join(work, "output", sid + ".csv"), newline="") as f:
            rows = list(csv.reader(f))[1:]
        if len(rows) != h:
            sys.exit(f"bench-m4: {sid}: {len(rows)} forecast rows, want {h}")
        w.writerow([sid] + [r[1] for r in rows])
        for r, y in zip(rows, actual[sid]):
            lo, hi = float(r[2]), float(r[3])
            inside += lo <= y <= hi
            total += 1
print(f"interval coverage (95% nominal, pooled over {total} points): {100 * inside / total:.2f}%")
PY

# 4. Score, with seasonal naive scored on the same split as the anchor.
python3 "$data/m4score.py" "$work/forecasts.csv"
python3 "$data/m4score.py" --baseline snaive --out "$work/snaive.csv" 2>/dev/null
python3 - "$data/m4score.py" "$work" <<'PY'
import json, subprocess, sys
score, work = sys.argv[1], sys.argv[2]
def run(f):
    out = subprocess.run([sys.executable, score, f, "--json"], check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out)
o, s = run(f"{work}/forecasts.csv"), run(f"{work}/snaive.csv")
print(f"\nanchor sNaive on the same split: sMAPE {s['sMAPE']:.4f}, MASE {s['MASE']:.4f}, OWA {s['OWA']:.4f}")
print(f"omen / sNaive: sMAPE {o['sMAPE'] / s['sMAPE']:.3f}, MASE {o['MASE'] / s['MASE']:.3f}, OWA {o['OWA'] / s['OWA']:.3f}")
PY
