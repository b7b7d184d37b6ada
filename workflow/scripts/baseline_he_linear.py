"""Snakemake script for rule baseline_he_linear: wiring only, the work is cryptomed.pipeline.he_stage."""

import sys

sys.path.insert(0, f"{snakemake.scriptdir}/../../src")  # noqa: F821 - importable without installing

from cryptomed.pipeline import he_stage, run_stage  # noqa: E402

run_stage(snakemake, he_stage)  # noqa: F821
