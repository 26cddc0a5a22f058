# Set-up and the two everyday commands. `make all_ablations` and `make test` each install what they
# need into .venv first, so both work on a fresh clone.
VENV ?= .venv
# The CPU wheel; on a GPU machine use e.g. `make TORCH=torch install` to get your CUDA build.
TORCH ?= torch==2.13.0
CORES ?= 2
BIN := $(VENV)/bin

.PHONY: install lock config-docs test test-fast all_ablations paper_figures dry-run benchmarks readme clean

install: $(VENV)/.installed

# constraints.txt pins every package to the version tested; pyproject.toml keeps ranges.
$(VENV)/.installed: pyproject.toml constraints.txt
	python3 -m venv $(VENV)
	$(BIN)/pip install --quiet -c constraints.txt "$(TORCH)" -e ".[dev]"
	touch $@

# Rewrite constraints.txt from what .venv holds (after `pip install -U NAME` there, or a new
# dependency in pyproject.toml); then pin the same versions in envs/upt.yaml (tests/test_packaging.py
# checks both). --all keeps setuptools (torch needs it at run time); pip itself is left out. torch's
# local label (+cpu) is dropped: TORCH picks the build, the pin its version.
lock:
	$(BIN)/pip freeze --all --exclude-editable > constraints.txt.new
	{ echo "# Exact versions of upt's dependencies, its dev and baselines extras included, as tested: the"; \
	  echo "# constraints \`make install\` installs with (pip install -c constraints.txt ...). pyproject.toml keeps"; \
	  echo "# ranges so upt still installs beside other packages. Regenerate with \`make lock\` (from what .venv holds)."; \
	  echo "# torch is pinned without its local label (+cpu): the TORCH variable of the Makefile picks the build."; \
	  sed -E -e '/^pip==/d' -e 's/^(torch==[^+]*)\+.*/\1/' constraints.txt.new; } > constraints.txt
	rm constraints.txt.new

# config/README.md, every config key with its description, is generated from the config schema.
config-docs: install
	$(BIN)/python -m upt.config_docs > config/README.md

test: install
	$(BIN)/pytest -n $(CORES)

# The inner loop: every test but those marked slow (workflow, Slurm profile, DDP/SIGTERM subprocesses).
test-fast: install
	$(BIN)/pytest -n $(CORES) -m "not slow"

all_ablations: install
	PATH="$(abspath $(BIN)):$$PATH" snakemake --cores $(CORES) all_ablations

dry-run: install
	PATH="$(abspath $(BIN)):$$PATH" snakemake -n all_ablations

# Every benchmark, one after another (they time things: never two at once), then their figures into
# docs/figures/benchmarks/, where the README shows them. CSVs and figures land in benchmarks/out/.
BENCHMARKS := bench_data_memory bench_generate bench_latent_cache bench_throughput bench_rollout bench_dag bench_loader bench_learning bench_startup bench_training_levers bench_speedups bench_ns2d_difficulty
benchmarks: install
	for b in $(BENCHMARKS); do PATH="$(abspath $(BIN)):$$PATH" $(BIN)/python benchmarks/$$b.py || exit 1; done
	mkdir -p docs/figures/benchmarks && cp benchmarks/out/*.png docs/figures/benchmarks/

# After `make all_ablations`: copy the default run's tables and main figures into docs/results/ and
# refill the README's generated blocks from them (no number in the README is typed by hand).
# Benchmark tables the README shows (each written by its benchmark into benchmarks/out/)
BENCHMARK_TABLES := speedups.md training_levers.md startup.md ns2d_difficulty.md study_cost.md fno_parity.md encoder_stall.md stall_cures.md
README_FIGURES := main_table.md modes_table.md claims_table.md error_vs_time.png claims.png prediction_vs_truth.png
readme: install
	for d in results/figures/*/; do \
	  name=$$(basename $$d); mkdir -p docs/results/$$name; \
	  for f in $(README_FIGURES); do [ ! -f $$d/$$f ] || cp $$d/$$f docs/results/$$name/; done; \
	  cp results/$$name/summary_stats.csv results/$$name/claims.csv docs/results/$$name/ 2>/dev/null || true; \
	done
	# a study run from another config (results: results/<study>) keeps its tables beside the default's
	for s in results/*/figures/; do [ -d "$$s" ] || continue; study=$$(basename $$(dirname $$s)); \
	  for d in $$s*/; do name=$$(basename $$d); mkdir -p docs/results/$$study/$$name; \
	    for f in $(README_FIGURES); do [ ! -f $$d/$$f ] || cp $$d/$$f docs/results/$$study/$$name/; done; \
	    cp results/$$study/$$name/summary_stats.csv results/$$study/$$name/claims.csv docs/results/$$study/$$name/ 2>/dev/null || true; \
	  done; \
	done
	[ ! -f benchmarks/out/learning.md ] || cp benchmarks/out/learning.md benchmarks/out/learning.png docs/results/
	[ ! -f benchmarks/out/rollout_speed_ns2d.md ] || cp benchmarks/out/rollout_speed_ns2d.md docs/results/
	mkdir -p docs/results/benchmarks
	for t in $(BENCHMARK_TABLES); do [ ! -f benchmarks/out/$$t ] || cp benchmarks/out/$$t docs/results/benchmarks/; done
	$(BIN)/python -c "from upt.models.presets import parameter_table; print(parameter_table())" > docs/results/presets.md
	$(BIN)/python -m upt.plotting.budget .snakemake/log all_ablations > docs/results/budget.md
	for c in config/study.yaml config/ns2d.yaml config/ns2d-64.yaml; do out=$$(sed -n 's/^results: //p' $$c); \
	  [ ! -d $$out ] || { mkdir -p docs/results/$$(basename $$out) && \
	    $(BIN)/python -m upt.plotting.budget .snakemake/log all_ablations $$c > docs/results/$$(basename $$out)/budget.md; } || exit 1; \
	done
	# the UPT against both FNO sizes, from every run that judged it (a study not run is left out; the
	# default's ns2d runs upt-s and fno as the 2D study does, bit for bit, so only the study's is shown)
	$(BIN)/python -m upt.plotting.comparison docs/results/fno_comparison.md --control fno --control fno-dynamics \
	  "Burgers 128 (default)=docs/results/burgers1d/claims.csv" "NS 32x32 (2D study)=docs/results/ns2d-study/ns2d/claims.csv" \
	  "NS 64x64 nu 1e-4=docs/results/ns2d-64/ns2d/claims.csv"
	$(BIN)/python -m upt.plotting.readme README.md

clean:
	rm -rf results .snakemake
