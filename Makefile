# Two commands on a fresh machine: `make demo` and `make test`.
# Each creates the virtual environment on first use and installs what it needs.

VENV    ?= .venv
PYTHON  ?= python3
BIN      = $(VENV)/bin
STAMP    = $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)
DEMO_DIR ?= runs/demo

.PHONY: install demo test test-fast clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

install: $(STAMP)

# DCGAN on the embedded Fashion-MNIST, on the CPU, a few minutes; a second run
# continues the same run directory (--resume auto) instead of failing.
demo: install
	$(BIN)/ganzoo list
	$(BIN)/ganzoo train dcgan --device cpu --batch-size 64 --steps 1500 --sample-every 250 --eval-every 250 \
		--out $(DEMO_DIR) --resume auto
	$(BIN)/ganzoo sample $(DEMO_DIR) --n 64 --seed 0 --out $(DEMO_DIR)/samples/final-seed0.png
	$(BIN)/ganzoo eval $(DEMO_DIR) --device cpu

test: install
	$(BIN)/python -m pytest -q -rs --durations=10

test-fast: install
	$(BIN)/python -m pytest -q -m "not slow"

clean:
	rm -rf $(VENV) runs build *.egg-info
