# Two entry points, each sets itself up on a fresh machine (tools/install.sh is idempotent).
#   make demo   runs the mini recipe end to end (every stage, CPU)
#   make test   runs the unit tests
#   make lint   ruff (ruff.toml): unused names, import order, line length
PY := .venv/bin/python
export OMP_NUM_THREADS ?= 2
export NLTK_DATA ?= $(CURDIR)/.venv/nltk_data

.PHONY: install demo test lint bench

install:
	bash tools/install.sh

demo: install
	cd egs2/libriheavy/sled && ./run.sh --mini true

test: install
	$(PY) -m pytest -q tests

lint: install
	$(PY) -m ruff check .

bench: install
	$(PY) bench/bench_sled.py
	$(PY) bench/bench_streaming.py
	$(PY) bench/bench_latent.py
