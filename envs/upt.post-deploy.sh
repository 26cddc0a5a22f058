#!/usr/bin/env bash
# Snakemake runs this once in a freshly created environment, from its working directory (the
# repository root, where `snakemake` is started): install upt itself into the environment, whose
# dependencies envs/upt.yaml already holds.
set -euo pipefail
python -m pip install --no-deps -e .
