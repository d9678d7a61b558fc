#!/usr/bin/env bash
# The GPU check on a CUDA machine with no network, from benchmarks/gpu_pack.sh's folder.
#
#   PACK=.gpu-pack benchmarks/gpu_offline.sh [gpu_check.py flags, e.g. --out DIR --parts a,b]
#
# The machine's python3 must hold a CUDA torch (and numpy, pyarrow, pillow, sentencepiece,
# sacrebleu, pyyaml, scikit-learn: a stock PyTorch image has them). This unpacks the pack under
# /tmp/m3-site (fairseq, hydra, omegaconf, CTranslate2, bitarray; fairseq's CLIs as scripts on
# PATH), puts the checkout on PYTHONPATH, unpacks the demo data, and runs benchmarks/gpu_check.py
# with --demo, so no part builds anything with Beam or fastText.
# CTranslate2's PyPI wheel loads libcublas.so.12; when only cuBLAS 13 is there (a CUDA 13
# torch), the cuBLAS 13 libraries are offered under the 12 names from a folder on
# LD_LIBRARY_PATH, and the report's machine section says so (M3_CUBLAS_SHIM): CTranslate2's
# figures then come from that pairing, which NVIDIA does not promise to work.
set -euo pipefail
cd "$(dirname "$0")/.."
PACK=${PACK:-.gpu-pack}
SITE=${M3_SITE:-/tmp/m3-site}
GPU_CHECK_T0=$(date +%s)
export GPU_CHECK_T0
say() { echo "[gpu-offline] $*"; }

mkdir -p "$SITE"
tar xzf "$PACK/site.tgz" -C "$SITE"
python3 -m pip install -q --no-index --no-deps --no-compile --target "$SITE" "$PACK"/wheels/*.whl
mkdir -p "$SITE/bin"  # after pip: a bin/ already in its --target makes it warn
for tool in preprocess train generate; do
    printf '#!/usr/bin/env python3\nimport sys\nfrom fairseq_cli.%s import cli_main\nsys.exit(cli_main())\n' "$tool" \
        >"$SITE/bin/fairseq-$tool"
    chmod +x "$SITE/bin/fairseq-$tool"
done
export PYTHONPATH="$SITE:$PWD${PYTHONPATH:+:$PYTHONPATH}" PATH="$SITE/bin:$PATH"

if ! ldconfig -p 2>/dev/null | grep -q 'libcublas\.so\.12 '; then
    lib13=$(python3 -c 'import glob, sys
hits = [h for p in sys.path for h in glob.glob(p + "/nvidia/**/libcublas.so.13", recursive=True)]
print(hits[0] if hits else "")')
    if [ -n "$lib13" ]; then
        mkdir -p "$SITE/cublas12"
        ln -sf "$lib13" "$SITE/cublas12/libcublas.so.12"
        ln -sf "$(dirname "$lib13")/libcublasLt.so.13" "$SITE/cublas12/libcublasLt.so.12"
        export LD_LIBRARY_PATH="$SITE/cublas12:$(dirname "$lib13")${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
        export M3_CUBLAS_SHIM="libcublas.so.12 -> $lib13"
        say "CTranslate2 gets cuBLAS 13 under the 12 name ($lib13)"
    fi
fi
demo=$(mktemp -d)
tar xzf "$PACK/demo.tgz" -C "$demo"
GPU_CHECK_INSTALL_S=$(( $(date +%s) - GPU_CHECK_T0 ))
export GPU_CHECK_INSTALL_S
say "unpacked in ${GPU_CHECK_INSTALL_S} s"
exec python3 benchmarks/gpu_check.py --demo "$demo/m3-demo" "$@"
