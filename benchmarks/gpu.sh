#!/usr/bin/env bash
# The GPU numbers in one run, under 8 minutes on one GPU:
#
#   (a) the escape engine's particle-steps/s at 1e6 particles on Fig. 6's workload (10-d Styblinski-Tang,
#       data noise with fresh samples, batch 1, SGD; benchmarks/scaling.py --once);
#   (b) SDE time / discrete time on the same particles and steps (benchmarks/sde_throughput.py: SGD, Adam, Adai,
#       both closures; 2^20 particles x 1000 steps);
#   (c) the CIFAR ResNet-18 training step in images/s, Adai against optax Adam, float32 and bfloat16, and
#       against PyTorch (official adai_optim.Adai when importable, else the transcription) when torch with CUDA
#       is importable (benchmarks/train_step.py; GPU_SH_TRAIN_OPTIMIZERS=adai,adam,sgd adds SGD, ~1-2 min more).
#
#   bash benchmarks/gpu.sh                    # on a machine with a GPU
#   bash benchmarks/gpu.sh --cpu-smoke        # every part at tiny sizes on the CPU, ~1 min (tests/test_benchmarks.py)
#   GPU_SH_REDUCED=1 bash benchmarks/gpu.sh   # the same as --cpu-smoke
#   bash benchmarks/gpu.sh --allow-cpu        # the full sizes without a GPU (slow: tens of minutes on a CPU)
#
# Without a GPU the full mode stops before running anything, with exit status 2 and a message: its numbers
# are meant as GPU numbers (docs/results.md), and CPU numbers printed under this script's headers would be easy
# to mistake for them; the full sizes would also take far longer than 8 minutes on a CPU. --cpu-smoke checks
# the script anywhere; --allow-cpu runs the full sizes on whatever jax finds.
#
# Python: $PYTHON if set, else the repository's .venv/bin/python, else python3. Runs from the repository root
# wherever it is called from. Each part prints a header, and the script prints the device jax found.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
if [[ -n "${PYTHON:-}" ]]; then
    PY="$PYTHON"
elif [[ -x .venv/bin/python ]]; then
    PY=.venv/bin/python
else
    PY=python3
fi

SMOKE=0
[[ "${GPU_SH_REDUCED:-0}" != "0" ]] && SMOKE=1
ALLOW_CPU=0
for arg in "$@"; do
    case "$arg" in
        --cpu-smoke) SMOKE=1 ;;
        --allow-cpu) ALLOW_CPU=1 ;;
        -h|--help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d' | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "gpu.sh: unknown argument '$arg' (try --help)" >&2; exit 64 ;;
    esac
done

if [[ $SMOKE == 1 ]]; then
    export JAX_PLATFORMS=cpu
    ENGINE_ARGS=(--particles 2048 --steps 128 --repeats 1)
    SDE_ARGS=(--particles 64 --steps 20 --optimizers sgd)
    TRAIN_ARGS=(--width 4 --batch-size 4 --steps 1 --repeats 1 --warmup 1 --optimizers adai,adam)
    MODE="CPU smoke (tiny sizes)"
else
    ENGINE_ARGS=(--particles 1000000 --steps 4096 --repeats 3)
    SDE_ARGS=(--particles 1048576 --steps 1000)
    TRAIN_ARGS=(--optimizers "${GPU_SH_TRAIN_OPTIMIZERS:-adai,adam}")
    MODE="full"
fi

header() {
    echo
    echo "=================================================================================================="
    echo "== $*"
    echo "=================================================================================================="
}

START=$SECONDS
header "gpu.sh ($MODE): devices"
echo "repository: $ROOT"
echo "python: $PY ($("$PY" -c 'import sys; print(sys.version.split()[0])'))"
if command -v nvidia-smi > /dev/null 2>&1; then
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
fi
FOUND="$("$PY" -c 'import jax; b = jax.default_backend(); print(b)
print(f"jax {jax.__version__}, backend {b}, devices: {jax.devices()}")')"
BACKEND="$(head -n 1 <<< "$FOUND")"
tail -n +2 <<< "$FOUND"
if [[ $SMOKE == 0 && "$BACKEND" != "gpu" && $ALLOW_CPU == 0 ]]; then
    echo "gpu.sh: jax found no GPU (backend '$BACKEND'). These are GPU benchmarks: nothing was run." >&2
    echo "gpu.sh: use --cpu-smoke to check the script at tiny sizes, or --allow-cpu to run the full sizes here." >&2
    exit 2
fi

T=$SECONDS
header "(a) escape engine: particle-steps/s, Fig. 6 workload (fresh samples, SGD, 10-d, batch 1)"
"$PY" benchmarks/scaling.py --once --engine sgd --sde none --dims 10 "${ENGINE_ARGS[@]}"
echo "(a) took $((SECONDS - T)) s"

T=$SECONDS
header "(b) SDE time / discrete time (benchmarks/sde_throughput.py)"
"$PY" benchmarks/sde_throughput.py "${SDE_ARGS[@]}"
echo "(b) took $((SECONDS - T)) s"

T=$SECONDS
header "(c) ResNet-18 training step: images/s, Adai vs optax Adam (and PyTorch when importable with CUDA)"
"$PY" benchmarks/train_step.py "${TRAIN_ARGS[@]}"
echo "(c) took $((SECONDS - T)) s"

TOTAL=$((SECONDS - START))
echo
echo "gpu.sh ($MODE) done in $TOTAL s"
if [[ $SMOKE == 0 && $TOTAL -gt 480 ]]; then
    echo "gpu.sh: WARNING: took over 8 minutes"
fi
