#!/usr/bin/env bash
# Issue 9's GPU checks on one NVIDIA GPU, side by side (PARTS picks some; default all four):
#   tests      the test suite with CUDA present (the CUDA-only tests run; device=auto code paths use
#              the GPU). 95 s with -n 4 on an H200 beside the other parts.
#   paper      the paper-size 20-block supernet with the public reference's settings (blocks only,
#              batch 96, lr 0.025) up to 500k images seen, the per-image learning curve that needs a
#              GPU. About 1,900 images/s on an H200 beside the other parts: 4.5 min.
#   supernets  the CPU-setting recipe (configs/train/cifar10-small*.yaml) trained with seeds 1 and 2
#              for nested and for independent init, each scored with `spos correlate` against the
#              stand-alone runs already measured: how far Kendall tau moves between supernet
#              trainings of one recipe. Four side by side on an H200: 8.5 min with the scoring.
#   standalone stand-alone seeds 1 and 2 for the 20-arch draw (lifts the reference's ceiling from
#              one seed): 40 runs of 1,000 steps, 4 at a time, about 8 min beside the rest.
#
#   [PARTS="tests paper"] benchmarks/gpu_fidelity.sh OUT REF
#
# A device call is limited to 10 minutes: all four parts need two calls on one warm machine (the
# second continues the first's trainings from their checkpoints; the results come back from each).
#
# REF holds what the CPU runs measured: supernet.pt (the nested recipe, seed 0), n20/standalone.jsonl
# and ref10/standalone.jsonl (journals of `spos correlate` runs with 20 and 10 archs). The data are
# expected where configs/data/cifar10-small.yaml points (../shared/data/cifar10-small), at the same
# resolved path as on the machine that trained REF's runs, so that their training configs match.
# Work goes to WORK (default /tmp/gpu_fidelity); running the script again continues what a cut
# run left there. SMOKE=1 runs everything a few steps long (a check of this script, on any machine).
set -u
OUT=${1:?usage: gpu_fidelity.sh OUT REF}
REF=${2:?usage: gpu_fidelity.sh OUT REF}
WORK=${WORK:-/tmp/gpu_fidelity}
SMOKE=${SMOKE:-0}
SPOS=${SPOS:-spos}
PARTS=${PARTS:-tests paper supernets standalone}
want() { [[ " $PARTS " == *" $1 "* ]]; }
mkdir -p "$OUT" "$WORK"
export OMP_NUM_THREADS=1 PYTHONUNBUFFERED=1
say() { echo "[$(date +%T)] $*"; }

if [ "$SMOKE" = 1 ]; then
    TRAIN_STEPS=(--max-steps 12); FID_STEPS=(--steps 50 --eval-every 50 --device auto); CORR_STEPS=(--steps 10)
    TESTS=(tests/test_latency.py -x); SEED_JOBS=2; N20=3; N10=3
else
    TRAIN_STEPS=(); FID_STEPS=(--steps 5250 --eval-every 250 --device cuda); CORR_STEPS=(--steps 1000)
    TESTS=(-n 4); SEED_JOBS=4; N20=20; N10=10
fi

pids=()
if want tests; then
    say "test suite"
    timeout 300 python3 -m pytest -q -p no:cacheprovider "${TESTS[@]}" > "$WORK/pytest.log" 2>&1 &
    pids+=($!)
fi

if want paper && ! grep -q '"step": 5250' "$WORK/fidelity-ref-blocks.jsonl" 2>/dev/null; then
    say "paper-size supernet, reference settings"
    timeout 540 python3 benchmarks/supernet_fidelity.py "${FID_STEPS[@]}" \
        --out "$WORK/fidelity-ref-blocks.jsonl" > "$WORK/fidelity.log" 2>&1 &
    pids+=($!)
fi

train() {  # NAME CONFIG SEED: train (or resume) one supernet, then score it on both arch draws
    local dir="$WORK/$1"
    if [ ! -s "$dir/supernet.pt" ]; then
        local resume=(); [ -s "$dir/checkpoint.pt" ] && resume=(--resume)
        timeout 480 $SPOS train --config "$2" --seed "$3" --out "$dir" "${TRAIN_STEPS[@]}" "${resume[@]}" \
            > "$WORK/$1.train.log" 2>&1 || { say "$1: training stopped (exit $?)"; return; }
    fi
    local draw archs seeds
    for spec in "n20 $N20 1" "ref10 $N10 3"; do  # REF folder, archs drawn, stand-alone seeds it holds
        read -r draw archs seeds <<< "$spec"
        local corr="$dir-corr$archs" resume=()
        [ -s "$corr/correlation.json" ] && continue
        [ -s "$corr/state.json" ] && resume=(--resume)
        timeout 90 $SPOS correlate --supernet "$dir/supernet.pt" --num-archs "$archs" --standalone-seeds "$seeds" \
            "${CORR_STEPS[@]}" --standalone-from "$REF/$draw" --out "$corr" "${resume[@]}" \
            > "$corr.log" 2>&1 || say "$dir: correlate over $archs archs stopped (exit $?)"
    done
}
want supernets && say "CPU-setting recipe, seeds 1 and 2, nested and independent init"
for init in nested independent; do
    want supernets || break
    config=configs/train/cifar10-small.yaml
    [ $init = independent ] && config=configs/train/cifar10-small-independent.yaml
    for seed in 1 2; do
        train "$init-s$seed" "$config" "$seed" &
        pids+=($!)
    done
done

seeds=$WORK/n20-seeds
if want standalone && [ ! -s "$seeds/correlation.json" ]; then
    say "stand-alone seeds 1 and 2 for the 20-arch draw"
    resume=(); [ -s "$seeds/state.json" ] && resume=(--resume)
    timeout 540 $SPOS correlate --supernet "$REF/supernet.pt" --num-archs $N20 "${CORR_STEPS[@]}" --standalone-seeds 3 \
        --standalone-from "$REF/n20" --jobs $SEED_JOBS --out "$seeds" "${resume[@]}" > "$WORK/n20-seeds.log" 2>&1 &
    pids+=($!)
fi

wait "${pids[@]}"
say "done; packing"
nvidia-smi --query-gpu=name,memory.used,memory.total --format=csv > "$WORK/gpu.txt" 2>&1
# Everything but the checkpoints comes back in one archive, the supernets in another.
(cd "$WORK" && tar czf "$OUT/results.tgz" --exclude=checkpoint.pt --exclude=supernet.pt --exclude='*.pt' .)
(cd "$WORK" && find . -name supernet.pt -print0 | tar cf "$OUT/supernets.tar" --null -T -)
tail -3 "$WORK/pytest.log" 2>/dev/null
for f in "$WORK"/*-corr*/correlation.json "$WORK"/n20-seeds/correlation.json; do
    [ -s "$f" ] && python3 -c "import json,sys; r=json.load(open(sys.argv[1])); print(sys.argv[1], 'tau', round(r['kendall_tau'],3), 'n', r['num_archs'])" "$f"
done
grep -h mean_paths_top1 "$WORK/fidelity-ref-blocks.jsonl" 2>/dev/null | tail -4 | cut -c1-120
