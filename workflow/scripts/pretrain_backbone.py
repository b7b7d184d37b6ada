"""Snakemake script for rule pretrain_backbone: wiring only, the work is cryptomed.pipeline.pretrain_stage."""

import sys

sys.path.insert(0, f"{snakemake.scriptdir}/../../src")  # noqa: F821 - importable without installing

from cryptomed.pipeline import pretrain_stage, run_stage  # noqa: E402

run_stage(snakemake, pretrain_stage)  # noqa: F821
