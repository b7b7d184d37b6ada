"""Snakemake script for rule transfer_features: wiring only, the work is cryptomed.pipeline.transfer_features_stage."""

import sys

sys.path.insert(0, f"{snakemake.scriptdir}/../../src")  # noqa: F821 - importable without installing

from cryptomed.pipeline import transfer_features_stage, run_stage  # noqa: E402

run_stage(snakemake, transfer_features_stage)  # noqa: F821
