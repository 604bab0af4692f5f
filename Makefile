# Two commands do all set-up on a fresh machine (README): `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DATA ?= ../shared/data

.PHONY: venv sysdeps demo test lint bench clean

$(STAMP): requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	# onnx2tf pins numpy 1.x and an old TensorFlow; it runs fine beside the pinned stack.
	$(PY) -m pip install -q --no-deps onnx2tf==1.29.24
	$(PY) -m pip install -q --no-deps -e .
	touch $(STAMP)

venv: $(STAMP)

# The main job on embedded defaults: fbnetv3_b (hub cache, else seeded random weights), fp32 and
# int8 .pte, each checked on the ExecuTorch runtime against float on the committed sample images.
demo: $(STAMP)
	$(VENV)/bin/edge demo

sysdeps:
	bash scripts/sysdeps.sh

# Set-up first (Debian packages, the aarch64 wheel the cross-build test needs), then the suite on two
# workers; modules sharing heavy fixtures stay on one worker (xdist_group marks: tests/conftest.py).
test: $(STAMP) sysdeps
	EDGE_PYTHON=$(PY) bash scripts/build_runner.sh fetch >/dev/null
	$(PY) -m pytest -q -n 2 --durations=25 tests

lint: $(STAMP)
	bash scripts/lint.sh

bench: $(STAMP)
	$(PY) benchmarks/bench_executorch.py

clean:
	rm -rf out .pytest_cache .mypy_cache .ruff_cache
