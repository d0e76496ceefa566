#!/usr/bin/env bash
# Run a CPU benchmark twice: on this CPU as it is, then imitating an AVX2-only CPU (no
# AVX-512, no native bf16) with ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2
# MKL_ENABLE_INSTRUCTIONS=AVX2 FBGEMM_ENABLE_INSTRUCTIONS=AVX2 (FBGEMM, behind --quantize fp16
# and int8-dynamic, picks its kernels from cpuid unless told; perf shows ymm kernels then). The
# imitation gets its own autotune and inductor caches, so nothing measured or compiled for
# one ISA is reused by the other. benchmarks/RESULTS.md says how the imitation was checked.
#
#   bash benchmarks/cpu_kinds.sh .venv/bin/python benchmarks/bench_train.py --configs a
set -u
cd "$(dirname "$0")/.."
echo "=== this CPU as it is"
"$@"
echo "=== imitating an AVX2-only CPU"
ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2 FBGEMM_ENABLE_INSTRUCTIONS=AVX2 \
  GPT2_CACHE_DIR="${TMPDIR:-/tmp}/gpt2-cache-avx2" TORCHINDUCTOR_CACHE_DIR="${TMPDIR:-/tmp}/inductor-avx2" "$@"
