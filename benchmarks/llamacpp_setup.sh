#!/usr/bin/env bash
# The environment of benchmarks/bench_llamacpp.py, kept apart from the project's: llama.cpp
# (built from the llama-cpp-python source package on PyPI, which vendors it), its GGUF
# converter and the packages the converter imports. Cached in .bench/: a second run reuses it.
#
#   bash benchmarks/llamacpp_setup.sh            # llama.cpp built for this CPU (-march=native)
#   LLAMA_KIND=avx2 bash benchmarks/llamacpp_setup.sh   # built for AVX2 only (no AVX-512), to
#                                                       # compare with our AVX2 imitation
set -euo pipefail
cd "$(dirname "$0")/.."
KIND=${LLAMA_KIND:-native}
VERSION=0.3.36
VENV=.bench/llamacpp-$KIND
if [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c "import llama_cpp, gguf" 2>/dev/null \
    && [ -f .bench/llama.cpp/convert_hf_to_gguf.py ]; then
  echo "llama.cpp ($KIND) is ready in $VENV"; exit 0
fi
python3 -m venv "$VENV"
"$VENV/bin/pip" install --quiet --upgrade pip
# The converter imports torch, numpy, sentencepiece and transformers' tokenizer classes.
"$VENV/bin/pip" install --quiet torch==2.13.0 numpy sentencepiece "transformers>=4.40" gguf
if [ "$KIND" = avx2 ]; then
  export CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON \
-DGGML_AVX512=OFF -DGGML_AVX512_VBMI=OFF -DGGML_AVX512_VNNI=OFF -DGGML_AVX512_BF16=OFF"
fi
# Build with every core, at low priority so that a shared machine stays usable. --no-cache-dir:
# pip would otherwise reuse a wheel built earlier for another KIND (its cache ignores CMAKE_ARGS).
"$VENV/bin/python" -c "import llama_cpp" 2>/dev/null || \
  CMAKE_BUILD_PARALLEL_LEVEL=$(nproc) nice -n 19 "$VENV/bin/pip" install --no-cache-dir \
  --no-binary llama-cpp-python "llama-cpp-python==$VERSION"
if [ "$KIND" = avx2 ] && command -v objdump >/dev/null; then  # an AVX2 build has no AVX-512 code
  CPU_LIB=$("$VENV/bin/python" -c "import llama_cpp, pathlib; print(next(pathlib.Path(llama_cpp.__file__).parent.glob('lib/libggml-cpu.so')))")
  if objdump -d "$CPU_LIB" | grep -q zmm; then
    echo "$CPU_LIB uses AVX-512 registers: not an AVX2 build; remove $VENV and run again" >&2; exit 1
  fi
fi
# The converter script ships in the source package (vendor/llama.cpp); keep a copy beside the venv.
mkdir -p .bench/src && "$VENV/bin/pip" download --quiet --no-deps --no-binary :all: \
  "llama-cpp-python==$VERSION" -d .bench/src
VENDOR="llama_cpp_python-$VERSION/vendor/llama.cpp"
tar -xzf ".bench/src/llama_cpp_python-$VERSION.tar.gz" -C .bench/src "$VENDOR/convert_hf_to_gguf.py" \
  "$VENDOR/conversion" "$VENDOR/gguf-py"
ln -sfn "$PWD/.bench/src/$VENDOR" .bench/llama.cpp  # the converter: .bench/llama.cpp/convert_hf_to_gguf.py
echo "llama.cpp ($KIND) is ready in $VENV"
