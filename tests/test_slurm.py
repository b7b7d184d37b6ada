"""The small workflow through a real Slurm cluster (snakemake-executor-plugin-slurm).

`.ci/run` starts a single-node cluster on localhost with one fake GPU (`.ci/slurm-cluster`) and exports
SLURM_CONF; without a cluster the test is skipped.
"""

import os
import re
import shutil
import subprocess

import pytest

from workflow_helpers import copy_workflow, snakemake

pytestmark = pytest.mark.e2e


def slurm_up() -> bool:
    if not (os.environ.get("SLURM_CONF") and shutil.which("sbatch") and shutil.which("sinfo")):
        return False
    return subprocess.run(["sinfo", "-h"], capture_output=True, timeout=30).returncode == 0


@pytest.mark.skipif(not slurm_up(), reason="no Slurm cluster (SLURM_CONF unset or not answering; .ci/run starts one)")
def test_small_workflow_runs_as_slurm_jobs_and_gpu_rules_get_a_gpu(tmp_path, shared_data):
    wd = copy_workflow(tmp_path / "wf")
    (wd / "config/slurm.yaml").write_text(
        "datasets: [chest_xray]\nsecurity:\n  enabled: false\n"
        "baselines:\n  transfer:\n    enabled: false\n  he_linear:\n    enabled: false\n")
    proc = snakemake(
        wd, configs=["config/test.yaml", "config/slurm.yaml"], mirror=shared_data, timeout=1800,
        extra=["--profile", "profiles/slurm", "--jobs", "4", "--slurm-status-command", "squeue",
               "--slurm-init-seconds-before-status-checks", "5", "--slurm-keep-successful-logs",
               "--default-resources", "runtime=30", "mem_mb=1500", "--set-resources", "train:mem_mb=3000",
               "--latency-wait", "15"])
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-5000:]
    assert (wd / "results/chest_xray/comparison.md").is_file()
    logs = wd / ".snakemake/slurm_logs"
    for rule in ("download", "preprocess", "encrypt", "decrypt", "train", "evaluate", "compare_baselines"):
        assert list((logs / f"rule_{rule}").rglob("*.log")), f"{rule} did not run as a Slurm job"
    # the GPU-tagged rule's jobs were submitted with --gpus=1 and Slurm allocated the (fake) GPU to them
    train_ids = [p.stem for p in (logs / "rule_train").rglob("*.log")]
    assert len(train_ids) == 3
    for job_id in train_ids:
        info = subprocess.run(["scontrol", "show", "job", job_id], capture_output=True, text=True).stdout
        assert re.search(r"gres/gpu[:=]1|gpu:1", info), info
    for job_id in (p.stem for p in (logs / "rule_encrypt").rglob("*.log")):
        info = subprocess.run(["scontrol", "show", "job", job_id], capture_output=True, text=True).stdout
        assert "gpu" not in info.lower().replace("gpu=0", ""), info
