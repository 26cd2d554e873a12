#!/usr/bin/env bash
# The GPU checks of one session, in one go: the throughput benchmark against the typical
# implementation, then two epochs of Table 1's four runs as one fused job (the second epoch,
# compiled and warm, times a Table 1 epoch; x 200 projects the whole table).
#   OUT=results-folder bash benchmarks/gpu_session.sh
#   DEVICE=cpu SMALL=1 bash benchmarks/gpu_session.sh   # the same steps, tiny, to check the script
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-runs/gpu}
PY=${PY:-python3}
DEVICE=${DEVICE:-cuda}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
if [ "${SMALL:-0}" = 1 ]; then  # a check of the script itself, minutes on a CPU
  BENCH_SIZE="--tiny"
  JOB_SIZE="--depth 8 --width 4 --max-steps-per-epoch 3 --synthetic-train-per-class 5 --synthetic-test-per-class 2"
else
  BENCH_SIZE="--steps 50 --repeats 3 --warmup 10 --sweep-steps 30 --sweep-repeats 2"
  JOB_SIZE="--synthetic-train-per-class 500 --synthetic-test-per-class 100"
fi
if [ "$DEVICE" = cuda ]; then
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
fi
$PY -c 'import torch, torchvision; print("torch", torch.__version__, "torchvision", torchvision.__version__, "cuda", torch.version.cuda)' | tee -a "$OUT/gpu.txt"

# 1. reference vs ours (loop, grouped, compiled), then K and batch sweeps of the fastest mode
$PY benchmarks/dml_bench.py --device "$DEVICE" $BENCH_SIZE --data-dir "$OUT/data" \
  --json "$OUT/bench.json" 2>&1 | tee "$OUT/bench.txt"

# 2. Table 1's four methods x 2 ResNet-32 peers, one fused job, 2 epochs on a CIFAR-sized
#    synthetic split (50,000 train / 10,000 test images)
$PY -m sdml train-many --profile paper --data synthetic --data-dir "$OUT/data" --device "$DEVICE" \
  $JOB_SIZE --epochs 2 --out-root "$OUT/table1" --no-progress 2>&1 | tee "$OUT/table1.txt"
$PY - "$OUT/table1" <<'PY' | tee "$OUT/projection.txt"
import json, pathlib, sys
rows = [json.loads(p.read_text().splitlines()[-1]) for p in pathlib.Path(sys.argv[1]).glob("*/metrics.jsonl")]
epoch_s = max(r["train_seconds"] for r in rows)
print(f"{len(rows)} runs fused; warm epoch {epoch_s:.1f} s of training; "
      f"projected Table 1 (200 epochs, training only): {200 * epoch_s / 60:.1f} min")
PY
