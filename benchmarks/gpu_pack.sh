#!/usr/bin/env bash
# Pack what the GPU check needs for a CUDA machine that has no network (issue 18's check on a
# loaned machine whose python3 already holds CUDA torch, but not Beam, fairseq or CTranslate2).
#
#   benchmarks/gpu_pack.sh [DIR]          # default DIR: .gpu-pack (git-ignored); about 60 MB
#
# Run it here (network to PyPI, the project's .venv made by `make install`); then, on the GPU
# machine, with DIR copied beside the checkout: benchmarks/gpu_offline.sh (see there).
# DIR gets:
#   wheels/   CTranslate2 and bitarray for the target's CPython (TARGET_PY, default 3.12), manylinux;
#   site.tgz  fairseq-fixed as an importable tree: its Python files from the PyPI sdist, and its
#             Cython/C++ extensions that translation needs (data_utils_fast, token_block_utils_fast,
#             libbleu) compiled here with BUILD_PY (a CPython of the target's version; Cython
#             and numpy 2 are pip-installed for it under a temporary folder). fairseq's libnat and
#             libbase (torch C++ extensions for non-autoregressive models) are left out: they
#             need torch at build time and no m3curate path uses them. Plus hydra-core,
#             omegaconf and antlr4 (pure Python) from the .venv;
#   demo.tgz  `m3curate demo --samples 600 --pretrain-minutes 0` built here, or DEMO=DIR, one
#             built before (its dataset/,
#             models/mt/ and inputs/heldout/): the check's demo parts read it, so the GPU
#             machine needs no Beam or fastText.
set -euo pipefail
cd "$(dirname "$0")/.."
PACK=$(mkdir -p "${1:-.gpu-pack}" && cd "${1:-.gpu-pack}" && pwd)
TARGET_PY=${TARGET_PY:-3.12}
BUILD_PY=${BUILD_PY:-python$TARGET_PY}
BIN=.venv/bin
SITE_PACKAGES=$("$BIN/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
say() { echo "[gpu-pack] $*"; }

command -v "$BUILD_PY" >/dev/null || { say "no $BUILD_PY here (BUILD_PY=path to a CPython $TARGET_PY)"; exit 2; }
[ -x "$BIN/python" ] || { say "no .venv: run 'make install' first"; exit 2; }

say "wheels for CPython $TARGET_PY"
rm -rf "$PACK/wheels" && mkdir -p "$PACK/wheels"
platforms=()
for p in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64; do platforms+=(--platform "$p"); done
"$BIN/pip" download -q --no-deps --only-binary=:all: --python-version "$TARGET_PY" --implementation cp \
    "${platforms[@]}" -d "$PACK/wheels" \
    "ctranslate2==$("$BIN/python" -c 'import ctranslate2; print(ctranslate2.__version__)')" \
    "bitarray==$("$BIN/python" -c 'from importlib.metadata import version; print(version("bitarray"))')"

say "fairseq-fixed for CPython $TARGET_PY"
url=$(curl -fsSL https://pypi.org/simple/fairseq-fixed/ | grep -o 'https://[^"#]*fairseq_fixed-0\.12\.3\.1\.tar\.gz' | head -1)
curl -fsSL -o "$TMP/fairseq.tar.gz" "$url"
tar xzf "$TMP/fairseq.tar.gz" -C "$TMP"
src=$TMP/fairseq_fixed-0.12.3.1
"$BUILD_PY" -m pip install -q --target "$TMP/build-deps" "cython>=3" "numpy>=2" setuptools
cat > "$src/setup_ext.py" <<'PY'
import numpy
from Cython.Build import cythonize
from setuptools import Extension, setup

args = ["-std=c++11", "-O3"]
ext = [Extension("fairseq.libbleu", ["fairseq/clib/libbleu/libbleu.cpp", "fairseq/clib/libbleu/module.cpp"],
                 extra_compile_args=args)]
ext += [Extension(f"fairseq.data.{name}", [f"fairseq/data/{name}.pyx"], language="c++", extra_compile_args=args,
                  include_dirs=[numpy.get_include()]) for name in ("data_utils_fast", "token_block_utils_fast")]
setup(name="fairseq-ext", ext_modules=cythonize(ext, language_level=3), script_args=["build_ext", "--inplace"])
PY
(cd "$src" && PYTHONPATH="$TMP/build-deps" "$BUILD_PY" setup_ext.py >"$TMP/build.log" 2>&1) \
    || { tail -20 "$TMP/build.log"; exit 1; }
site=$TMP/site
mkdir -p "$site"
cp -r "$src/fairseq" "$src/fairseq_cli" "$site/"
rm -rf "$site/fairseq/examples" "$site/fairseq/clib"
find "$site" \( -name '*.pyx' -o -name '*.cpp' -o -name '*.c' \) -delete
for pkg in hydra omegaconf antlr4 hydra_core-*.dist-info omegaconf-*.dist-info antlr4_python3_runtime-*.dist-info \
           fairseq_fixed-*.dist-info; do
    cp -r "$SITE_PACKAGES"/$pkg "$site/"
done
find "$site" -name '__pycache__' -prune -exec rm -rf {} +
tar czf "$PACK/site.tgz" -C "$site" .

if [ -n "${DEMO:-}" ]; then
    say "the demo data from $DEMO"
    ln -s "$(cd "$DEMO" && pwd)" "$TMP/m3-demo"
else
    say "the demo data (m3curate demo, 600 samples, no pre-training)"
    "$BIN/m3curate" demo --out "$TMP/m3-demo" --samples 600 --pretrain-minutes 0 --overwrite >"$TMP/demo.log" 2>&1 \
        || { tail -20 "$TMP/demo.log"; exit 1; }
fi
tar czhf "$PACK/demo.tgz" -C "$TMP" m3-demo/dataset m3-demo/models/mt m3-demo/inputs/heldout
du -sh "$PACK"/* | sed 's/^/[gpu-pack] /'
