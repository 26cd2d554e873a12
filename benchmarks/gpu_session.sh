#!/usr/bin/env bash
# The GPU checks of one session, the most important first; each stage writes its results under
# $OUT as soon as it ends, so a session cut short keeps what it measured:
#   1. the reference against ours (loop, grouped, compiled, graphs): the "x reference" figure
#   2. Table 1's four runs as one fused job, 2 epochs, compiled as the fastest mode of stage 1
#      (the second, warm epoch times a Table 1 epoch; x 200 projects the whole table)
#   3. the fastest mode against K and batch size, one process per point, while BUDGET_S lasts
#      (each point compiles afresh, about a minute; the reference is timed at K = 2)
#   4. real data: when Fashion-MNIST's idx files lie beside this script (or in $FASHION_DIR),
#      Table 1's four methods as one fused job under the `fashion` profile (full Fashion-MNIST,
#      2 x ResNet-20, 60 epochs), stopped after FASHION_S seconds; a cut-short job keeps its
#      finished epochs (resume it with the same command and --resume)
#
#   OUT=results-folder BUDGET_S=480 bash benchmarks/gpu_session.sh
#   DEVICE=cpu SMALL=1 bash benchmarks/gpu_session.sh   # the same steps, tiny, to check the script
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"  # sdml from this checkout, installed or not
OUT=${OUT:-runs/gpu}
PY=${PY:-python3}
DEVICE=${DEVICE:-cuda}
BUDGET_S=${BUDGET_S:-480}   # stage 3 starts no point after BUDGET_S - POINT_S seconds
POINT_S=${POINT_S:-120}     # what one sweep point may take, compiling included
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
if [ "${SMALL:-0}" = 1 ]; then  # a check of the script itself, seconds on a CPU
  BENCH_SIZE="--tiny"
  POINT_SIZE="--depth 8 --width 4 --steps 2 --repeats 1 --warmup 1 --workers 0"
  JOB_SIZE="--depth 8 --width 4 --max-steps-per-epoch 3 --synthetic-train-per-class 5 --synthetic-test-per-class 2"
  SWEEP="2,16 3,16 2,8"
else
  BENCH_SIZE="--steps 50 --repeats 3 --warmup 10"
  POINT_SIZE="--steps 30 --repeats 2 --warmup 10"
  JOB_SIZE="--synthetic-train-per-class 500 --synthetic-test-per-class 100"
  SWEEP="2,128 4,64 2,256 8,64"  # K,batch; (2, 64) is stage 1's main point
fi
if [ "$DEVICE" = cuda ]; then
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
fi
$PY -c 'import torch, torchvision; print("torch", torch.__version__, "torchvision", torchvision.__version__, "cuda", torch.version.cuda)' | tee -a "$OUT/gpu.txt"

# 1. reference vs ours in every mode, interleaved, at K = 2, batch 64
echo "== stage 1: modes ($SECONDS s)"
$PY benchmarks/dml_bench.py --device "$DEVICE" $BENCH_SIZE --no-sweep --compile-on-cpu \
  --data-dir "$OUT/data" --json "$OUT/bench.json" 2>&1 | tee "$OUT/bench.txt" \
  || echo "stage 1 failed (see bench.txt); going on with the grouped mode" | tee -a "$OUT/bench.txt"
read -r BEST COMPILE < <($PY - "$OUT/bench.json" <<'PY'
import json, pathlib, sys
path = pathlib.Path(sys.argv[1])
best = (json.loads(path.read_text())["best"] if path.is_file() else None) or "grouped"
print(best, {"compiled": "on", "graphs": "graphs"}.get(best, "off"))
PY
) || true
BEST=${BEST:-grouped}; COMPILE=${COMPILE:-off}
echo "fastest mode: $BEST (Table 1 job with --compile $COMPILE)" | tee -a "$OUT/bench.txt"

# 2. Table 1's four methods x 2 ResNet-32 peers, one fused job, 2 epochs on a CIFAR-sized
#    synthetic split (50,000 train / 10,000 test images)
echo "== stage 2: Table 1 job ($SECONDS s)"
table1() {  # $1: the --compile value; the job's runs go to $OUT/table1-$1
  $PY -m sdml train-many --profile paper --data synthetic --data-dir "$OUT/data" --device "$DEVICE" \
    --compile "$1" $JOB_SIZE --epochs 2 --out-root "$OUT/table1-$1" --no-progress 2>&1 \
    | tee "$OUT/table1-$1.txt"
}
if ! table1 "$COMPILE"; then
  echo "the job failed with --compile $COMPILE (see table1-$COMPILE.txt)"
  if [ "$COMPILE" != off ]; then
    echo "once more eagerly"
    table1 off || echo "the job failed eagerly too (see table1-off.txt)"
  fi
fi
$PY - "$OUT" <<'PY' | tee "$OUT/projection.txt"
import json, pathlib, sys
for job in sorted(p for p in pathlib.Path(sys.argv[1]).glob("table1-*") if p.is_dir()):
    rows = [json.loads(p.read_text().splitlines()[-1]) for p in job.glob("*/metrics.jsonl")]
    if len(rows) < 4 or any(r["epoch"] < 2 for r in rows):
        print(f"{job.name}: unfinished ({len(rows)} runs with metrics)")
        continue
    epoch_s = max(r["train_seconds"] for r in rows)
    print(f"{job.name}: {len(rows)} runs fused; warm epoch {epoch_s:.1f} s of training; "
          f"projected Table 1 (200 epochs, training only): {200 * epoch_s / 60:.1f} min")
PY

# 3. the fastest mode against K and batch, one point per process, while the budget lasts
echo "== stage 3: sweeps of $BEST ($SECONDS s)"
for point in $SWEEP; do
  k=${point%,*}; b=${point#*,}
  if [ $((SECONDS + POINT_S)) -gt "$BUDGET_S" ]; then
    echo "sweep K=$k batch=$b: not run, the budget of $BUDGET_S s is spent ($SECONDS s)" | tee -a "$OUT/sweep.txt"
    continue
  fi
  modes="$BEST"; [ "$k" = 2 ] && modes="reference $BEST"
  $PY benchmarks/dml_bench.py --device "$DEVICE" $POINT_SIZE --peers "$k" --batch "$b" \
    --modes $modes --no-sweep --compile-on-cpu --data-dir "$OUT/data" \
    --json "$OUT/sweep-k$k-b$b.json" > "$OUT/sweep-k$k-b$b.txt" 2>&1 \
    || echo "sweep K=$k batch=$b failed (see sweep-k$k-b$b.txt)" | tee -a "$OUT/sweep.txt"
done
$PY - "$OUT" "$BEST" <<'PY' | tee -a "$OUT/sweep.txt"
import json, pathlib, sys
for p in sorted(pathlib.Path(sys.argv[1]).glob("sweep-k*-b*.json")):
    r = json.loads(p.read_text())
    m, s = r["modes"], r["settings"]
    ours = m[sys.argv[2]]
    ips = (f"{ours['images_per_s']['median']:.0f} img/s" if ours["status"] == "measured"
           else ours["status"])
    ref = m.get("reference", {}).get("images_per_s", {}).get("median")
    print(f"K={s['peers']} batch={s['batch']} {sys.argv[2]}: {ips}"
          + (f", reference {ref:.0f}" if ref else ""))
PY
# 4. real-data accuracies: the `fashion` profile on Fashion-MNIST's idx files, when present
FASHION_DIR=${FASHION_DIR:-benchmarks}
if ls "$FASHION_DIR"/train-images-idx3-ubyte* >/dev/null 2>&1; then
  echo "== stage 4: Fashion-MNIST, profile fashion ($SECONDS s)"
  FASHION_SIZE=""
  [ "${SMALL:-0}" = 1 ] && FASHION_SIZE="--depth 8 --width 4 --epochs 1 --max-steps-per-epoch 3 --train-per-class 20 --test-per-class 10 --batch-size 16"
  timeout "${FASHION_S:-420}" $PY -m sdml train-many --profile fashion --data fashion-mnist \
    --data-dir "$FASHION_DIR" --no-download --device "$DEVICE" --compile "$COMPILE" $FASHION_SIZE \
    --out-root "$OUT/fashion" --no-progress 2>&1 | tee "$OUT/fashion.txt" \
    || echo "stage 4 stopped or failed (see fashion.txt); finished epochs are in $OUT/fashion" | tee -a "$OUT/fashion.txt"
else
  echo "== stage 4 skipped: no train-images-idx3-ubyte[.gz] in $FASHION_DIR"
fi
echo "== done ($SECONDS s)"
