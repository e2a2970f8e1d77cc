# Two commands on a fresh machine:  `make demo` (main job on the offline default)  and  `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
# Assets live in $SPARSEPO_CACHE, else ~/.cache/sparsepo: one place, whether a command starts from make or a shell.
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: setup assets demo-assets test test-fast demo lint bench
setup: $(VENV)/.installed
$(VENV)/.installed: pyproject.toml scripts/setup_env.sh
	VENV=$(VENV) bash scripts/setup_env.sh

assets: setup
	$(PY) -m sparsepo.assets prepare

test: assets
	$(VENV)/bin/ruff check .
	$(PY) -m pytest

# The fast tier: no Ray, vLLM, lm-eval or SmolLM2 training (`-m "not slow"`), for iterating.
test-fast: assets
	$(PY) -m pytest -m "not slow"

lint: setup
	$(VENV)/bin/ruff check .

# The main job (the sentiment frontier) needs only the policy model and the reviews; every other asset (the NLI
# stand-in, HumanEval, punkt) is prepared by the command that needs it, once, with a progress line.
demo-assets: setup
	$(PY) -m sparsepo.assets prepare --only smollm2 pang-lee

demo: demo-assets
	$(PY) tune/frontier.py

bench: assets
	$(PY) bench/step.py
