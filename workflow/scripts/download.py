"""Snakemake script for rule download: wiring only, the work is cryptomed.pipeline.download_stage."""

import sys

sys.path.insert(0, f"{snakemake.scriptdir}/../../src")  # noqa: F821 - importable without installing

from cryptomed.pipeline import download_stage, run_stage  # noqa: E402

run_stage(snakemake, download_stage)  # noqa: F821
