# Two commands set everything up: `make demo` (the main job) and `make test`.
# Each creates .venv if missing and installs what it needs (pinned in constraints.txt).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PYTEST_WORKERS ?= 2

.PHONY: demo readme test test-fast speed references docs docs-serve ope ope-window slate-ope install clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e ".[rl,seq,ray,rllib,torchrl,minari,test,docs]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(PY) -m benchmarks.run --suite quick

readme: $(STAMP)
	$(PY) -m benchmarks.readme

test: $(STAMP)
	$(PY) -m pytest -n $(PYTEST_WORKERS) -q

test-fast: $(STAMP)
	$(PY) -m pytest -n $(PYTEST_WORKERS) -q -m "not slow"

# The documentation site into build/site (warnings are errors; the notebooks run on the small budget).
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs build --strict

docs-serve: $(STAMP)
	NO_MKDOCS_2_WARNING=1 RECSIM_DOCS_EXECUTE=0 $(PY) -m mkdocs serve

# Off-policy estimators scored against the simulator's truth (5 logs of 10,000 users; about 9 minutes).
ope: $(STAMP)
	$(PY) -m benchmarks.ope --preset default --behaviour myopic --epsilon 0.3 --users 10000 --logs 5 \
		--targets random,myopic,heuristic,dqn,dqn_myopic,planner --seed 1 --out results/ope --no-progress

# The same without FQE's episode memory, for the README's comparison (about 8 minutes).
ope-window: $(STAMP)
	$(PY) -m benchmarks.ope --preset default --behaviour myopic --epsilon 0.3 --users 10000 --logs 5 \
		--targets random,myopic,heuristic,dqn,dqn_myopic,planner --seed 1 --out results/ope_window --no-fqe-memory --no-progress

# The slate estimators (IPS, IIPS, RIPS, PI) against the online and the logged-context truth (about 2 minutes).
slate-ope: $(STAMP)
	$(PY) -m benchmarks.slate_ope --users 5000 --truth-users 2000 --targets random,myopic,heuristic,soft_heuristic,slateq \
		--train-steps 100000 --max-weight 100 --out results/slate_ope

references: $(STAMP)
	$(PY) -m benchmarks.references

speed: $(STAMP)
	$(PY) -m benchmarks.speed

clean:
	rm -rf $(VENV) results .pytest_cache .hypothesis
