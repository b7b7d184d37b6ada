#!/usr/bin/env bash
# On a lent GPU machine (benchmarks/gpu_bundle.py packs what it needs, here): one step per call, back to back.
#   bash benchmarks/gpu_device.sh install       # carry .whl: the wheels into .gpusite (kept for the next calls)
#   bash benchmarks/gpu_device.sh chest_xray    # carry .gpudata: the 224-px GPU configuration on chest X-ray
#   bash benchmarks/gpu_device.sh brain_mri     # carry .gpudata2 (xz tar): the same on brain MRI
# A dataset step runs the proposed CNN (aes_cnn), the EfficientNet-Lite0 transfer baseline (frozen head and fine-tuned
# top, kept by validation loss) and their ensemble with profiles/gpu + config/gpu224.yaml on the JAX backend, first
# timing the augmentation on this card, and leaves under $OUT: <dataset>_results.tgz (results/<dataset>, the logs,
# the benchmarks) and <dataset>_run.log. Set GPU_CONFIG to use another config file (a CPU smoke test: config/test.yaml).
set -uo pipefail
cd "$(dirname "$0")/.."
step="${1:?usage: gpu_device.sh install|chest_xray|brain_mri}"
OUT="${OUT:-/tmp/gpu_out}"
mkdir -p "$OUT"
PY="${PYTHON:-python3}"
export PYTHONPATH="$PWD/.gpusite${PYTHONPATH:+:$PYTHONPATH}" KERAS_BACKEND="${KERAS_BACKEND:-jax}" PYTHONUNBUFFERED=1

if [[ "$step" == install ]]; then
    rm -rf .gpusite
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target .gpusite .whl/*.whl || exit 1
    "$PY" -c "import snakemake, keras, Crypto, jsonschema, tenseal; print('installed: keras', keras.__version__, \
keras.backend.backend())" || exit 1
    { nvidia-smi -L; "$PY" -c "import jax; print(jax.devices())"; lscpu | grep -m1 'Model name'; } \
        > "$OUT/machine.txt" 2>&1
    cat "$OUT/machine.txt"
    exit 0
fi

case "$step" in
    chest_xray) data=.gpudata ;;
    brain_mri) data=.gpudata2 ;;
    *) echo "unknown step $step: install, chest_xray or brain_mri" >&2; exit 2 ;;
esac
if ! "$PY" -c "import snakemake, keras, Crypto, jsonschema, tenseal" 2>/dev/null; then
    echo "the packages are not installed: run 'gpu_device.sh install' first (carry .whl; .gpusite is lost once the" \
         "machine is given back)" >&2
    exit 3
fi
[[ -d "$data" ]] || { echo "no $data: carry it (benchmarks/gpu_bundle.py data $step $data)" >&2; exit 3; }
for packed in "$data"/*/*.tar.xz; do   # the brain MRI tar travels compressed
    [[ -e "$packed" ]] && xz -d -T0 "$packed"
done
export DATA_MIRROR="$PWD/$data"
log="$OUT/${step}_run.log"
# whatever happens, one archive of what the run wrote (no cached features or models: they are large, and files over
# 16 MiB do not come back) -- at most 3 files per step under $OUT (the limit is 8)
archive() { tar czf "$OUT/${step}_results.tgz" --exclude='*/features/*' --exclude='*/models/*' "results/$step" \
            logs results/benchmarks 2>/dev/null; ls -la "$OUT"; }
trap archive EXIT
rc=0
{
    echo "== $(date -u +%FT%TZ) $step on: $(nvidia-smi -L 2>/dev/null | head -1)"
    if [[ -z "${GPU_CONFIG:-}" ]]; then   # the augmentation's speed on this card first (docs/scaling.md)
        timeout 90 "$PY" benchmarks/augment_speed.py --size 224 --batch 32 --steps 100
    fi
    targets=()
    for m in aes_cnn efficientnet_lite0_transfer ensemble; do targets+=("results/$step/metrics/$m.json"); done
    # a command may run 600 s: 90 + 420 leaves time to decompress and archive
    timeout "${GPU_TIMEOUT:-420}" "$PY" -m snakemake --profile profiles/gpu --scheduler greedy --cores all \
        "${targets[@]}" --configfile "${GPU_CONFIG:-config/gpu224.yaml}"
    rc=$?
    echo "== snakemake exit $rc at $(date -u +%FT%TZ)"
} > "$log" 2>&1
tail -n 25 "$log"
exit "$rc"
