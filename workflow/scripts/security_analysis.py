"""Snakemake script for rule security_analysis: wiring only, the work is cryptomed.pipeline.security_stage."""

import sys

sys.path.insert(0, f"{snakemake.scriptdir}/../../src")  # noqa: F821 - importable without installing

from cryptomed.pipeline import security_stage, run_stage  # noqa: E402

run_stage(snakemake, security_stage)  # noqa: F821
