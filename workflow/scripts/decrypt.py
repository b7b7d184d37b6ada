"""Snakemake script for rule decrypt: wiring only, the work is cryptomed.pipeline.decrypt_stage."""

import sys

sys.path.insert(0, f"{snakemake.scriptdir}/../../src")  # noqa: F821 - importable without installing

from cryptomed.pipeline import decrypt_stage, run_stage  # noqa: E402

run_stage(snakemake, decrypt_stage)  # noqa: F821
