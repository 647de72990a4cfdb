# Two commands: `make run` starts the dashboard, `make test` runs every test.
# Both create .venv on first use: torch's CPU build first (so no CUDA wheels are pulled),
# then the project with its dev, browser-test and Dask extras. Re-running is a no-op until
# pyproject.toml changes.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TORCH_VERSION ?= 2.13.0
PORT ?= 8501

.PHONY: run test test-fast bench lint clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "torch==$(TORCH_VERSION)"
	$(BIN)/python -m pip install --quiet -e ".[dev,e2e,dask]"
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/streamlit run app.py --server.port $(PORT) --server.address 127.0.0.1

test: $(STAMP)
	$(BIN)/python -m pytest

test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not e2e and not slow"

lint: $(STAMP)
	$(BIN)/ruff check ad_core ad_studio_ui app.py pages tests
	$(BIN)/ruff format --check ad_core ad_studio_ui app.py pages tests

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
