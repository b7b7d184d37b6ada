"""Snakemake script for rule evaluate: wiring only, the work is cryptomed.pipeline.evaluate_stage."""

import sys

sys.path.insert(0, f"{snakemake.scriptdir}/../../src")  # noqa: F821 - importable without installing

from cryptomed.pipeline import evaluate_stage, run_stage  # noqa: E402

run_stage(snakemake, evaluate_stage)  # noqa: F821
