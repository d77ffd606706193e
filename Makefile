# `make setup` is idempotent: it reinstalls only when pyproject/constraints/requirements change.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup wheels dist demo test test-all bench lint clean

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -r requirements-dev.txt -e ".[data]"
	touch $(STAMP)

# The pinned wheels the extension zips carry (ONNX Runtime, Pillow, trimesh),
# fetched once into build/wheels/ and sha256-checked.
# `make test` needs them (the tests install a zip in Blender): fetching here fails loudly when the registry
# cannot be reached, where the tests alone would only skip.
wheels: setup
	$(PY) build.py --fetch-only

dist: wheels
	$(PY) build.py

demo: setup
	$(PY) scripts/demo.py

test: setup wheels
	$(PY) -m pytest

test-all: setup wheels
	$(PY) -m pytest -m ""

bench: setup wheels
	$(PY) bench/extract.py
	$(PY) bench/runtime_worker.py
	$(PY) bench/first_click.py

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

clean:
	rm -rf $(VENV) dist build out .pytest_cache .ruff_cache *.egg-info
