#!/usr/bin/env bash
# One device call: bench_gpu.py, then `linsteer run --preset paper` (reduced n) on a random-init
# Llama-3.2-1B-shaped folder with an offline tokenizer and the real data files, each phase timed
# (scripts/paper_phases.py: the phases, the generation path and the full preset extrapolated).
# Results go to $OUT (default ./gpu_out). `--tiny` runs the same steps on tiny shapes (CPU check).
#   needs: .gpudata/data/{gsm8k,mmlu_pro}/test.jsonl (carried), optional .whl/ wheels
# Time on one H200, estimated from the shapes (not yet measured): bench_gpu about 4 min (reading
# ~25 s; compiled ~2 min, three compiled generators at ~30-45 s each plus 14 timed calls of 256 x
# 128 tokens; the eager table ~75 s; the sweep ~30 s), the paper preset ~1.5 min with its model
# folder: under 6 min, each part capped (BENCH_TIMEOUT, PAPER_TIMEOUT) and its JSON kept on a cap.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
TINY=""
[ "${1:-}" = "--tiny" ] && TINY=1
OUT="${OUT:-$ROOT/gpu_out}"
mkdir -p "$OUT"
PY="${PYTHON:-python3}"
if ls .whl/*.whl >/dev/null 2>&1; then
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        && export PYTHONPATH=/tmp/site
fi
export PYTHONPATH="$ROOT/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 LINSTEER_CACHE=/tmp/linsteer-cache MPLBACKEND=Agg
DATA="$ROOT/${GPUDATA:-.gpudata}/data"
T0=$(date +%s)
stamp() { echo "$1 $(( $(date +%s) - T0 ))s" | tee -a "$OUT/phases.txt"; }
$PY -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__, 'cuda', torch.cuda.is_available())" | tee "$OUT/phases.txt"

# 1. the benchmark (one JSON)
timeout "${BENCH_TIMEOUT:-250}" $PY benchmarks/bench_gpu.py ${TINY:+--tiny} --out "$OUT/bench_gpu.json" 2> "$OUT/bench_gpu.log" | tail -n 3
stamp "bench_gpu done"

# 2. the paper preset, reduced, on a random-init Llama-3.2-1B shape
WORK=/tmp/linsteer-paper
rm -rf "$WORK" && mkdir -p "$WORK" && ln -s "$DATA" "$WORK/data"
SHAPE=llama-3.2-1b
[ -n "$TINY" ] && SHAPE=tiny-llama
B0=$(date +%s)
$PY benchmarks/random_models.py --shape $SHAPE --out "$WORK/model" --text "$DATA/gsm8k/test.jsonl" >/dev/null 2>>"$OUT/paper.err"
BUILD=$(( $(date +%s) - B0 ))
stamp "model folder written"
if [ -n "$TINY" ]; then
    printf 'n_per_class: 8\nn_dev: 3\nn_test: 3\nn_null: 1\nmax_new_tokens: 8\nneutral_texts: 2\nanalysis_layers: 2\nbatch_size: 16\n' > "$WORK/reduced.yaml"
else
    printf 'n_per_class: 32\nn_dev: 4\nn_test: 8\nn_null: 1\nmax_new_tokens: 16\nneutral_texts: 4\nanalysis_layers: 2\nbatch_size: 64\n' > "$WORK/reduced.yaml"
fi
(cd "$WORK" && timeout "${PAPER_TIMEOUT:-$([ -n "$TINY" ] && echo 900 || echo 80)}" $PY -m linsteer.cli.main run --preset paper --config reduced.yaml \
    --model model --runs runs 2>&1) | tr '\r' '\n' | grep -v -e '%|' -e '^\s*$' > "$OUT/paper.log"
echo "paper preset exit code ${PIPESTATUS[0]}" | tee -a "$OUT/phases.txt"
stamp "paper preset done"
RUN=$(ls -d "$WORK"/runs/* 2>/dev/null | head -n 1)
if [ -n "$RUN" ]; then
    $PY scripts/paper_phases.py "$RUN" "$OUT/paper.log" "$BUILD" > "$OUT/paper_phases.json"
    cp "$RUN/results.json" "$OUT/" 2>/dev/null
    (cd "$RUN" && tar czf "$OUT/paper_run.tgz" --exclude='*.safetensors' .)
fi
tail -n 5 "$OUT/paper.err" "$OUT/paper.log"
stamp "all done"
cat "$OUT/paper_phases.json" 2>/dev/null
cat "$OUT/bench_gpu.json"
