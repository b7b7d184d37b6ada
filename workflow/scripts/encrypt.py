"""Snakemake script for rule encrypt: wiring only, the work is cryptomed.pipeline.encrypt_stage."""

import sys

sys.path.insert(0, f"{snakemake.scriptdir}/../../src")  # noqa: F821 - importable without installing

from cryptomed.pipeline import encrypt_stage, run_stage  # noqa: E402

run_stage(snakemake, encrypt_stage)  # noqa: F821
