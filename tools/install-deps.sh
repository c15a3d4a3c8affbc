#!/usr/bin/env bash
# Installs, from Debian's packages, whatever engine's build, tests and benchmarks need and this
# machine lacks. Safe to run again: it installs nothing when everything is present.
set -euo pipefail

packages=(
  g++ cmake make            # toolchain (OpenMP comes with GCC)
  libxsimd-dev              # SIMD kernels, one source per instruction set
  libdnnl-dev               # oneDNN: the baseline our kernels are measured against
  ocl-icd-opencl-dev        # only Recommended by libdnnl-dev, but its CMake config requires OpenCL
  libgtest-dev              # GoogleTest
  libbenchmark-dev          # Google Benchmark
  libonnx-testdata          # ONNX's node tests: external conformance for our kernels
  nlohmann-json3-dev        # JSON for the weight loader (safetensors headers, config.json)
  libcli11-dev              # command-line parsing for engine-run
  gnuplot-nox               # engine-bench --sweep --plot and engine-profile --roofline draw with it
  clang-14 libclang-rt-14-dev   # libFuzzer + sanitizer runtimes: the loader's fuzz target (ENGINE_FUZZ)
  libomp-14-dev             # LLVM's OpenMP and its Archer tool: the ThreadSanitizer build (ENGINE_TSAN)
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if ((${#missing[@]} == 0)); then
  echo "install-deps: all ${#packages[@]} packages present"
  exit 0
fi

echo "install-deps: installing ${missing[*]}"
sudo_cmd=()
if [[ $(id -u) -ne 0 ]]; then sudo_cmd=(sudo); fi
export DEBIAN_FRONTEND=noninteractive
"${sudo_cmd[@]}" apt-get update -qq
"${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
