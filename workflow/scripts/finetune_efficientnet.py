"""Snakemake script for rule finetune_efficientnet: wiring only, the work is cryptomed.pipeline.efficientnet_finetune_stage."""

import sys

sys.path.insert(0, f"{snakemake.scriptdir}/../../src")  # noqa: F821 - importable without installing

from cryptomed.pipeline import efficientnet_finetune_stage, run_stage  # noqa: E402

run_stage(snakemake, efficientnet_finetune_stage)  # noqa: F821
