#!/usr/bin/env bash
# One GPU check: every CUDA path of m3curate and its GPU figures, in one command (issue 18).
#
#   benchmarks/gpu_check.sh [--out DIR] [--parts a,b] [--demo DIR]   # a CUDA machine: <= 8 minutes
#   benchmarks/gpu_check.sh --rehearse                                # CPU, tiny shapes, same parts
#
# On a GPU machine it first makes the environment (its time counts in the 8 minutes):
#   1. .venv: when missing, made by the Makefile's own rule; but with --system-site-packages
#      when the machine's python3 already has a CUDA torch, which is then used as it is;
#   2. CUDA torch: when the venv's torch is not a CUDA build (`make install` on a CPU machine
#      installs the CPU wheel of torch==2.13.0), it is replaced by torch==$TORCH_VERSION from
#      PyPI, whose Linux wheel is the CUDA build. The machine's pip configuration is bypassed
#      for that one command: it may point at a CPU wheelhouse (a local "+cpu" wheel of the same
#      version would win). TORCH_INDEX_URL picks another index (e.g. a PyTorch cu12x one);
#   3. `make install`: the project, and fairseq-fixed the way the Makefile installs it;
#   4. CTranslate2's PyPI wheel is built for CUDA 12 and loads libcublas.so.12: when neither
#      the venv nor the system has it (a CUDA 13 torch), nvidia-cublas-cu12 is installed and
#      its folder put on LD_LIBRARY_PATH.
# M3_WHEELS=DIR takes every package from a folder of wheels instead (a machine without network).
# A machine without network whose python3 already has CUDA torch (a stock PyTorch image): make the
# pack here with benchmarks/gpu_pack.sh, run benchmarks/gpu_offline.sh there (no venv, no Beam).
# A rehearsal installs nothing: it runs on the environment `make install` made.
# Then benchmarks/gpu_check.py runs the parts; results in out/gpu-check/ (gpu_check.json,
# gpu_check.md to paste into benchmarks/RESULTS.md, logs/). Exit status 0: every part ran and
# no check failed (a missed performance target is a verdict, not a failure).
set -euo pipefail
cd "$(dirname "$0")/.."
GPU_CHECK_T0=$(date +%s)
export GPU_CHECK_T0
PY=${PY:-python3}
BIN=.venv/bin
TORCH_VERSION=${TORCH_VERSION:-2.13.0}
REHEARSE=0
for arg in "$@"; do [ "$arg" = "--rehearse" ] && REHEARSE=1; done

say() { echo "[gpu-check] $*"; }

has_cuda_torch() {  # $1: a python
    "$1" -c 'import sys, torch; sys.exit(0 if torch.version.cuda else 1)' 2>/dev/null
}

pip_wheels_or_index() {  # pip install from M3_WHEELS when set
    if [ -n "${M3_WHEELS:-}" ]; then
        "$BIN/pip" install --no-index --find-links "$M3_WHEELS" "$@"
    else
        env -u PIP_FIND_LINKS -u PIP_EXTRA_INDEX_URL -u PIP_INDEX_URL -u PIP_CONSTRAINT PIP_CONFIG_FILE=/dev/null \
            "$BIN/pip" install --index-url "${TORCH_INDEX_URL:-https://pypi.org/simple}" "$@"
    fi
}

cublas12_dir() {  # the folder of a pip-installed libcublas.so.12 on the venv's path, if any
    "$BIN/python" -c 'import glob, os, sys
hits = [h for p in sys.path if os.path.isdir(p) for h in glob.glob(os.path.join(p, "nvidia", "*", "lib", "libcublas.so.12"))]
print(os.path.dirname(hits[0]) if hits else "")'
}

ct2_cuda_libs() {  # CTranslate2's PyPI wheel dlopens libcublas.so.12; a CUDA 13 torch brings none
    local dir
    dir=$(cublas12_dir)
    if [ -z "$dir" ] && ! ldconfig -p 2>/dev/null | grep -q 'libcublas\.so\.12 '; then
        say "no libcublas.so.12 for CTranslate2's CUDA build: installing nvidia-cublas-cu12"
        pip_wheels_or_index nvidia-cublas-cu12
        dir=$(cublas12_dir)
    fi
    if [ -n "$dir" ]; then
        LD_LIBRARY_PATH="$dir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
        export LD_LIBRARY_PATH
    fi
}

prepare() {
    if ! command -v nvidia-smi >/dev/null || ! nvidia-smi -L >/dev/null 2>&1; then
        say "no NVIDIA GPU here (nvidia-smi finds none); on a CPU machine run: $0 --rehearse"
        exit 2
    fi
    nvidia-smi -L
    if [ ! -x "$BIN/python" ]; then
        if has_cuda_torch "$PY"; then
            say "making .venv on $PY's site packages (its CUDA torch is used)"
            "$PY" -m venv --system-site-packages .venv
        else
            make "$BIN/python" PY="$PY"
        fi
    fi
    if ! has_cuda_torch "$BIN/python"; then
        say "the venv's torch is not a CUDA build: installing torch==$TORCH_VERSION (CUDA) from PyPI"
        if "$BIN/python" -c 'import torch' 2>/dev/null; then
            "$BIN/pip" uninstall --yes torch
        fi
        pip_wheels_or_index "torch==$TORCH_VERSION" \
            || { say "could not install CUDA torch (no network here? M3_WHEELS=DIR takes wheels from DIR)"; exit 2; }
        has_cuda_torch "$BIN/python" || { say "torch installed, but still no CUDA build"; exit 2; }
    fi
    if [ -n "${M3_WHEELS:-}" ]; then
        PIP_NO_INDEX=1 PIP_FIND_LINKS="$M3_WHEELS" make install PY="$PY"
    else
        make install PY="$PY"
    fi
    ct2_cuda_libs
}

if [ "$REHEARSE" = 1 ]; then
    [ -x "$BIN/python" ] || { say "no .venv: run 'make install' first (a rehearsal installs nothing)"; exit 2; }
else
    prepare
fi
GPU_CHECK_INSTALL_S=$(( $(date +%s) - GPU_CHECK_T0 ))
export GPU_CHECK_INSTALL_S
say "environment ready in ${GPU_CHECK_INSTALL_S} s"
exec "$BIN/python" benchmarks/gpu_check.py "$@"
