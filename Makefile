# contrastive-rosetta. `make demo` and `make test` create .venv on first use.
PY      ?= python3
VENV    ?= .venv
VPY     := $(VENV)/bin/python
STAMP   := $(VENV)/.installed
export TF_CPP_MIN_LOG_LEVEL ?= 2
export PYTHONHASHSEED ?= 0

.PHONY: results help demo test test-all bench bench-full lint format golden docs site clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-11s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	test -x $(VPY) || $(PY) -m venv $(VENV)
	$(VPY) -m pip install --quiet --upgrade pip
	$(VPY) -m pip install --quiet -e ".[test]"
	touch $(STAMP)

$(VENV)/.bench: $(STAMP)
	$(VPY) -m pip install --quiet -e ".[test,bench]"
	touch $(VENV)/.bench

demo: $(STAMP)  ## train SimCLR (torch) + MoCo (TF), evaluate, check parity, write runs/<ts>/report.md
	$(VPY) -m shared.apps.cli demo

test: $(STAMP)  ## the test suite (unit + cross-framework), slow tests excluded; the 15 slowest listed
	$(VPY) -m pytest -q --durations=15

test-all: $(STAMP)  ## every test, slow ones included; the 15 slowest listed
	$(VPY) -m pytest -q -m "" --durations=15

bench: $(VENV)/.bench  ## quick benchmark set (about 10 min on 2 cores); results in benchmarks/results/
	$(VPY) -m benchmarks.run --quick

bench-full: $(VENV)/.bench  ## every benchmark
	$(VPY) -m benchmarks.run --full

lint: $(STAMP)  ## ruff lint + format check
	$(VPY) -m ruff check .
	$(VPY) -m ruff format --check .

format: $(STAMP)  ## ruff fix + format
	$(VPY) -m ruff check --fix .
	$(VPY) -m ruff format .

docs: $(STAMP)  ## regenerate every generated page of docs/ (each is tested against its generator)
	$(VPY) -m shared.docgen.catalogue > /dev/null
	$(VPY) -m shared.docgen.drift > /dev/null
	$(VPY) -m shared.docgen.errata
	$(VPY) -m shared.docgen.side_by_side
	$(VPY) -m shared.docgen.tutorial
	$(VPY) -m shared.docgen.results_tables > /dev/null

results: $(STAMP)  ## every published accuracy: 3 seeds of the 2x2, the sweeps, the fine-tunes (about 1.5 h on 2 cores)
	$(VPY) -m shared.apps.cli results --seeds 3

site: $(STAMP)  ## build the static site offline into build/site (strict; with build/course where it exists)
	$(VPY) -m shared.docgen.site

course: $(STAMP)  ## render and execute the course into build/course
	$(VPY) -m shared.docgen.course --execute --jobs 2

golden: $(STAMP)  ## rebuild shared/parity/golden/ (the check runs in the tests)
	$(VPY) -m shared.parity.golden

clean:  ## remove caches (keeps .venv)
	rm -rf .pytest_cache .ruff_cache .hypothesis build *.egg-info
