"""Snakemake script for rule baseline_transfer: wiring only, the work is cryptomed.pipeline.transfer_stage."""

import sys

sys.path.insert(0, f"{snakemake.scriptdir}/../../src")  # noqa: F821 - importable without installing

from cryptomed.pipeline import transfer_stage, run_stage  # noqa: E402

run_stage(snakemake, transfer_stage)  # noqa: F821
