# The two commands of the quick start are `make demo` and `make test`; each sets everything up first.
SHELL := /bin/bash
SETUP := source scripts/setup.sh
CHECKPOINT ?= runs/default
ARGS ?=
# make test's (and test-fast's) pytest-xdist workers: each test file, and the six notebooks with the tests that read
# their checkpoint, stay on one worker (the scheduler in tests/conftest.py).
TEST_WORKERS ?= 2

.PHONY: demo train test test-fast lint lab notebooks bench learning record lock test-lowest

demo:  ## train the default profile (unless $(CHECKPOINT) holds a finished run), then serve the demo
	@$(SETUP) && python -m helpers.main --checkpoint $(CHECKPOINT) $(ARGS)

train:  ## train only: make train ARGS="--profile tiny --output runs/tiny"
	@$(SETUP) && python -m helpers.train $(ARGS)

test:  ## the whole suite: helper tests, and the six notebooks re-executed under nbval with the default profile (about 5 minutes on 2 cores)
	@$(SETUP) && PYTHONHASHSEED=0 python -m pytest -n $(TEST_WORKERS) --dist loadscope $(ARGS)

test-fast: lint  ## while developing: the linter, then the tests not marked slow, browser or soak, no notebooks (about a minute on 2 cores)
	@$(SETUP) && PYTHONHASHSEED=0 BERT_MEDITATIONS_PROFILE=tiny python -m pytest -n $(TEST_WORKERS) --dist loadscope tests -m "not slow and not browser and not soak" $(ARGS)

lint:  ## ruff: the checks and the formatting pyproject.toml configures, over the code, the tests and the notebooks
	@$(SETUP) && ruff check --no-cache . && ruff format --no-cache --check .

lab:  ## open the notebooks in JupyterLab
	@$(SETUP) && jupyter lab notebooks/ $(if $(filter 0,$(shell id -u)),--allow-root) $(ARGS)

notebooks:  ## re-execute the notebooks and store their outputs
	@$(SETUP) && python scripts/run_notebooks.py

bench:  ## the performance benchmark and time to quality (writes benchmarks/results.json; about 20 minutes on 2 cores)
	@$(SETUP) && python -m benchmarks.run $(ARGS)

learning:  ## the learning-curve experiments (writes benchmarks/learning.json, docs/learning_curves.png, docs/nsp_levers.png and docs/time_to_quality.png; about three hours)
	@$(SETUP) && python -m benchmarks.learning --jobs 2 $(ARGS)

record:  ## train the default profile once and keep its curves and answers in docs/record.json (about two minutes)
	@$(SETUP) && python -m helpers.record $(ARGS)

lock:  ## re-resolve requirements.lock from pyproject.toml in a scratch environment
	@bash scripts/lock.sh

test-lowest:  ## the fast tests at the lowest versions pyproject.toml allows (torch aside), in a scratch environment
	@bash scripts/test_lowest.sh $(ARGS)
