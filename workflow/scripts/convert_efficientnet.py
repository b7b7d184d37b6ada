"""Snakemake script for rule convert_efficientnet: wiring only, the work is cryptomed.pipeline.convert_efficientnet_stage."""

import sys

sys.path.insert(0, f"{snakemake.scriptdir}/../../src")  # noqa: F821 - importable without installing

from cryptomed.pipeline import convert_efficientnet_stage, run_stage  # noqa: E402

run_stage(snakemake, convert_efficientnet_stage)  # noqa: F821
