# One-command set-up: `make demo` and `make test` both install what a fresh machine needs first.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup test test-fast lint demo bench gpu-check clean

setup: $(STAMP)

$(STAMP): pyproject.toml scripts/install_system.sh
	bash scripts/install_system.sh
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch/torchvision first and pinned: these releases lie on this machine's disk (CUDA builds
	# that also run on CPU); PyPI's torchvision cannot import beside the CPU-only 2.13 wheel.
	$(PY) -m pip install -q torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install -q -e '.[dev]'
	# Waymo's protos only: the package pins TensorFlow 2.13 and numpy 1.23, which we never need.
	$(PY) -m pip install -q --no-deps waymo-open-dataset-tf-2-12-0==1.6.7
	touch $(STAMP)

# Everything (CI runs this): slow tests included, gpu tests skip without CUDA.
test: setup
	$(PY) -m pytest -q

# The edit-test loop: leaves out the tests marked slow (each has a fast smoke test of its path), on
# two pytest-xdist workers.
test-fast: setup
	$(PY) -m pytest -q -m "not slow" -n 2

# Syntax errors, pyflakes and import order (pyproject.toml [tool.ruff]); ruff comes with the dev extras.
lint: setup
	$(VENV)/bin/ruff check dipir pipelines reports tests benchmarks scripts

demo: setup
	$(VENV)/bin/dipir run benchmarks/demo.yaml --out runs/demo
	$(VENV)/bin/dipir report runs/demo
	$(VENV)/bin/dipir run benchmarks/mini_world_demo.yaml --out runs/mini-world-demo
	$(VENV)/bin/dipir report runs/mini-world-demo --main dipir:sds-no-lora

bench: setup
	@for f in benchmarks/perf/*.py; do echo "== $$f"; $(PY) $$f || exit 1; done

# DiPIR at paper scale on one GPU (SD-2.1-sized model from configs, 512², LoRA): s/iter, split, peak
# memory. Skips (exit 0) without CUDA.
gpu-check: setup
	$(PY) benchmarks/perf/gpu_check.py $(GPU_CHECK_ARGS)

clean:
	rm -rf $(VENV) runs .pytest_cache
