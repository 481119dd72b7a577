#!/usr/bin/env bash
# Issue 9 on one NVIDIA GPU: a longer stand-alone reference for the 29 archs of the two committed
# `spos correlate` draws (benchmarks/results/cifar10-small/standalone-{10,20}archs-3seeds.jsonl),
# trained for STEPS steps with seeds 0 and 1, JOBS runs at a time, beside the test files whose
# CUDA paths run only where a GPU is present. Each run is journaled to OUT as it finishes, so a
# run cut at LIMIT seconds still returns every finished run (seed 0 of all archs comes first).
#
#   benchmarks/gpu_standalone_reference.sh OUT [STEPS] [JOBS]
#
# SEEDS="3 4 5" trains other seeds, and DRAWS=10 the ten-arch draw alone (DRAWS=20: the twenty),
# e.g. to add seeds to the committed standalone-2000steps-h100.jsonl: reference_length.py reads
# both journals as one reference. TESTS=0 skips the test files.
#
# The data are expected where configs/data/cifar10-small.yaml points (../shared/data/cifar10-small)
# and the repository at the same path as where the CPU reference was trained, so that each run's
# training config hash matches the committed journals' (the runs are then reusable by
# `spos correlate --standalone-from`). Compare with benchmarks/reference_length.py.
# SMOKE=1 checks this script on any machine: the CPU, no tests, 3 steps of each run.
set -u
OUT=${1:?usage: gpu_standalone_reference.sh OUT [STEPS] [JOBS]}
STEPS=${2:-2000}
JOBS=${3:-14}
LIMIT=${LIMIT:-480}
SEEDS=${SEEDS:-0 1}
DRAWS=${DRAWS:-10 20}
DEVICE=cuda
[ "${SMOKE:-0}" = 1 ] && { STEPS=3; JOBS=2; DEVICE=cpu; }
RESULTS=benchmarks/results/cifar10-small
ARCHS=()
for draw in $DRAWS; do
    case $draw in
        10|20) ARCHS+=("$RESULTS/standalone-${draw}archs-3seeds.jsonl") ;;
        *) echo "gpu_standalone_reference.sh: DRAWS has '$draw'; expected 10 and/or 20" >&2; exit 2 ;;
    esac
done
mkdir -p "$OUT"
export OMP_NUM_THREADS=1 PYTHONUNBUFFERED=1
say() { echo "[$(date +%T)] $*"; }

{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
  python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)"; } > "$OUT/env.txt" 2>&1
nvidia-smi --query-gpu=timestamp,utilization.gpu,memory.used --format=csv -l 20 > "$OUT/gpu.csv" 2>&1 &
monitor=$!

tests=
if [ "$DEVICE" = cuda ] && [ "${TESTS:-1}" = 1 ]; then
    say "CUDA test files, 2 workers"
    timeout 300 python3 -m pytest -q -p no:cacheprovider -n 2 tests/test_latency.py tests/test_runtime.py \
        tests/test_search.py tests/test_export_core.py tests/test_export_parity.py > "$OUT/pytest.log" 2>&1 &
    tests=$!
fi

say "stand-alone reference: $STEPS steps, seeds $SEEDS, draws $DRAWS, $JOBS at a time, at most $LIMIT s"
# shellcheck disable=SC2086  # SEEDS is a list of numbers
timeout "$LIMIT" python3 benchmarks/standalone_reference.py --config configs/train/cifar10-small.yaml \
    --archs "${ARCHS[@]}" --steps "$STEPS" --seeds $SEEDS --jobs "$JOBS" --device "$DEVICE" \
    --out "${WORK:-/tmp/reference}" > "$OUT/reference.log" 2>&1
say "reference stopped (exit $?)"
cp "${WORK:-/tmp/reference}/standalone.jsonl" "$OUT/" 2>/dev/null
[ -n "$tests" ] && wait "$tests" && tail -3 "$OUT/pytest.log"
kill "$monitor" 2>/dev/null
say "$(wc -l < "$OUT/standalone.jsonl" 2>/dev/null || echo 0) runs finished"
