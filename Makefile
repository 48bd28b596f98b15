# Developer shortcuts; each target is one line a user could type instead.
PY ?= python

.PHONY: install demo test lint format bench

install:  ## CPU install: torch's CPU build first, then the package with its test extra
	$(PY) -m pip install torch==2.13.0
	$(PY) -m pip install -e ".[test]"

demo:  ## the main job: Dice vs Dice + MEEP on the built-in phantom, side-by-side table
	$(PY) -m monai_meep.apps.experiments compare

test:  ## the test suite (the same command CI runs)
	$(PY) -m pytest -q

lint:
	ruff check . && ruff format --check .

format:
	ruff format . && ruff check --fix .

bench:  ## benchmarks (pass DEVICE=cuda on a GPU machine)
	$(PY) -m benchmarks.run --device $(or $(DEVICE),cpu)
