"""Snakemake script for rule compare_baselines: wiring only, the work is cryptomed.pipeline.compare_stage."""

import sys

sys.path.insert(0, f"{snakemake.scriptdir}/../../src")  # noqa: F821 - importable without installing

from cryptomed.pipeline import compare_stage, run_stage  # noqa: E402

run_stage(snakemake, compare_stage)  # noqa: F821
