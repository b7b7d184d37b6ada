"""Snakemake script for rule baseline_ensemble: wiring only, the work is cryptomed.pipeline.ensemble_stage."""

import sys

sys.path.insert(0, f"{snakemake.scriptdir}/../../src")  # noqa: F821 - importable without installing

from cryptomed.pipeline import ensemble_stage, run_stage  # noqa: E402

run_stage(snakemake, ensemble_stage)  # noqa: F821
