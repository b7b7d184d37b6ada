"""Snakemake script for rule preprocess: wiring only, the work is cryptomed.pipeline.preprocess_stage."""

import sys

sys.path.insert(0, f"{snakemake.scriptdir}/../../src")  # noqa: F821 - importable without installing

from cryptomed.pipeline import preprocess_stage, run_stage  # noqa: E402

run_stage(snakemake, preprocess_stage)  # noqa: F821
