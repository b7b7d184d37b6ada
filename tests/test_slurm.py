"""The small workflow through a real Slurm cluster (snakemake-executor-plugin-slurm).

`.ci/run` starts a single-node cluster on localhost with one fake GPU (`.ci/slurm-cluster`) and exports
SLURM_CONF; without a cluster the test is skipped.

The test reruns, as Slurm jobs, part of a copy of the shared small run (tests/conftest.py `run`): chest X-ray from
`download` to `decrypt`, and brain MRI from the proposed method's `train` to `compare_baselines`. The two chains
are independent, so they run side by side: every stage of the workflow is a Slurm job once, at about half the time
of a whole second run. Snakemake runs through tests/snakemake_quick_status.py, which caps the executor's wait between
status checks at 2 s (the plugin adds 10 s to it before each check while no job ends).
"""

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from workflow_helpers import copy_run, snakemake

pytestmark = pytest.mark.e2e

FORCED = ("data/raw/chest_xray/images.tar", "results/brain_mri/models/aes_cnn.keras")  # with what follows them
TARGETS = ("results/chest_xray/timing/decrypt.csv", "results/brain_mri/comparison.md")
RULES = {"download", "preprocess", "encrypt", "decrypt", "train", "evaluate", "baseline_ensemble", "compare_baselines"}


def slurm_up() -> bool:
    if not (os.environ.get("SLURM_CONF") and shutil.which("sbatch") and shutil.which("sinfo")):
        return False
    return subprocess.run(["sinfo", "-h"], capture_output=True, timeout=30).returncode == 0


def job_info(job_id: str) -> str:
    return subprocess.run(["scontrol", "show", "job", job_id], capture_output=True, text=True).stdout


@pytest.mark.skipif(not slurm_up(), reason="no Slurm cluster (SLURM_CONF unset or not answering; .ci/run starts one)")
def test_small_workflow_runs_as_slurm_jobs_and_gpu_rules_get_a_gpu(run, tmp_path, shared_data):
    wd = copy_run(run[0], tmp_path / "wf")
    before = {rel: (wd / rel).stat().st_mtime_ns for rel in TARGETS}
    proc = snakemake(
        wd, *TARGETS, mirror=shared_data, timeout=1800, entry=[str(Path(__file__).with_name("snakemake_quick_status.py"))],
        extra=["--forcerun", *FORCED, "--profile", "profiles/slurm", "--jobs", "4", "--slurm-status-command", "squeue",
               "--slurm-init-seconds-before-status-checks", "1", "--slurm-keep-successful-logs",
               "--default-resources", "runtime=30", "mem_mb=1500", "--set-resources", "train:mem_mb=3000",
               "--latency-wait", "15"])
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-5000:]
    assert all((wd / rel).stat().st_mtime_ns > before[rel] for rel in TARGETS)  # rewritten by this run
    logs = wd / ".snakemake/slurm_logs"
    # every job ran as a Slurm job (a log per job in a folder per rule), and only the jobs the forced ones imply
    jobs = {p.stem: p.relative_to(logs).parts[0].removeprefix("rule_") for p in logs.glob("rule_*/**/*.log")}
    assert set(jobs.values()) == RULES, jobs
    assert len(jobs) == len(RULES)
    # the GPU-tagged rule's job was submitted with --gpus=1 and Slurm allocated the (fake) GPU to it; no job of a
    # CPU rule asked for one
    for job_id, rule in jobs.items():
        info = job_info(job_id)
        if rule == "train":
            assert re.search(r"gres/gpu[:=]1|gpu:1", info), info
        else:
            assert "gpu" not in info.lower().replace("gpu=0", ""), info
