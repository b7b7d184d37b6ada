"""Snakemake script for rule train: wiring only, the work is cryptomed.pipeline.train_stage."""

import sys

sys.path.insert(0, f"{snakemake.scriptdir}/../../src")  # noqa: F821 - importable without installing

from cryptomed.pipeline import train_stage, run_stage  # noqa: E402

run_stage(snakemake, train_stage)  # noqa: F821
