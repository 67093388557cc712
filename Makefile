# Two commands set everything up: `make demo` (the main job) and `make test`.
# Each creates .venv if missing and installs what it needs (pinned in constraints.txt).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PYTEST_WORKERS ?= 2

.PHONY: demo test test-fast speed install clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e ".[rl,test,seq]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(PY) -m benchmarks.demo

test: $(STAMP)
	$(PY) -m pytest -n $(PYTEST_WORKERS) -q

test-fast: $(STAMP)
	$(PY) -m pytest -n $(PYTEST_WORKERS) -q -m "not slow"

speed: $(STAMP)
	$(PY) -m benchmarks.speed

clean:
	rm -rf $(VENV) results .pytest_cache .hypothesis
