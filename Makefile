# Set-up and the two everyday commands. `make all_ablations` and `make test` each install what they
# need into .venv first, so both work on a fresh clone.
VENV ?= .venv
# The CPU wheel; on a GPU machine use e.g. `make TORCH=torch install` to get your CUDA build.
TORCH ?= torch==2.13.0
CORES ?= 2
BIN := $(VENV)/bin

.PHONY: install test all_ablations paper_figures dry-run clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(BIN)/pip install --quiet "$(TORCH)" -e ".[dev]"
	touch $@

test: install
	$(BIN)/pytest -n $(CORES)

all_ablations: install
	PATH="$(abspath $(BIN)):$$PATH" snakemake --cores $(CORES) all_ablations

dry-run: install
	PATH="$(abspath $(BIN)):$$PATH" snakemake -n all_ablations

clean:
	rm -rf results .snakemake
