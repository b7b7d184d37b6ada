"""Snakemake script for rule baseline_efficientnet_transfer: wiring only, the work is cryptomed.pipeline.efficientnet_transfer_stage."""

import sys

sys.path.insert(0, f"{snakemake.scriptdir}/../../src")  # noqa: F821 - importable without installing

from cryptomed.pipeline import efficientnet_transfer_stage, run_stage  # noqa: E402

run_stage(snakemake, efficientnet_transfer_stage)  # noqa: F821
