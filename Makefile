# oncodyn — the two commands: `make demo` and `make test`.
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-slow bench clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip
	$(BIN)/pip install torch==2.13.0

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install -e '.[test,zarr]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/oncodyn run sipf-focusing --preset demo --out runs/demo

test: $(STAMP)
	$(BIN)/python -m pytest -q

test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m slow

bench: $(STAMP)
	$(BIN)/oncodyn bench sipf
	$(BIN)/oncodyn bench glioma
	$(BIN)/oncodyn bench cpm
	$(BIN)/oncodyn bench neuralcpm
	$(BIN)/oncodyn bench angiogenesis
	$(BIN)/oncodyn bench deeplagrangian

clean:
	rm -rf runs .pytest_cache
