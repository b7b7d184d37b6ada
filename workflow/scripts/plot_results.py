"""Snakemake script for rule plot_results: wiring only, the work is cryptomed.pipeline.plot_results_stage."""

import sys

sys.path.insert(0, f"{snakemake.scriptdir}/../../src")  # noqa: F821 - importable without installing

from cryptomed.pipeline import plot_results_stage, run_stage  # noqa: E402

run_stage(snakemake, plot_results_stage)  # noqa: F821
