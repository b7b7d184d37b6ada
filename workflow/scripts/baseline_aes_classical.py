"""Snakemake script for rule baseline_aes_classical: wiring only, the work is cryptomed.pipeline.classical_stage."""

import sys

sys.path.insert(0, f"{snakemake.scriptdir}/../../src")  # noqa: F821 - importable without installing

from cryptomed.pipeline import classical_stage, run_stage  # noqa: E402

run_stage(snakemake, classical_stage)  # noqa: F821
