"""How the default run fills the 2 cores: no job asks for more cores than config threads_per_job, and the longest
jobs, and the short ones that gate them, start first (common.smk PRIORITY; docs/performance.md)."""

import json
import subprocess
import sys

import yaml

from conftest import REPO


def dag_jobs() -> list[dict]:
    proc = subprocess.run([sys.executable, str(REPO / "tests/snakemake_jobs.py")], cwd=REPO, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return [j for j in json.loads(proc.stdout.strip().splitlines()[-1]) if j["rule"] != "all"]


def job_name(job: dict) -> str:
    if job["rule"] in ("train", "evaluate"):  # results/<dataset>/models/<method>.keras, .../metrics/<method>.json
        return f'{job["rule"]}:{job["output"][0].rsplit("/", 1)[1].split(".")[0]}'
    return job["rule"]


def test_no_job_asks_for_more_cores_than_threads_per_job():
    """A job asking for 2 cores waits until both are free: with encrypt at crypto.threads (2) one core idled for
    minutes while a single-thread job finished, and the proposed CNN's training (the longest job) waited behind."""
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    jobs = dag_jobs()
    assert {j["rule"] for j in jobs} >= {"encrypt", "decrypt", "preprocess", "train", "evaluate"}
    assert {job_name(j): j["threads"] for j in jobs if j["threads"] > params["threads_per_job"]} == {}


def test_the_longest_jobs_and_their_gates_start_first():
    priority: dict[str, set] = {}
    for j in dag_jobs():
        priority.setdefault(job_name(j), set()).add(j["priority"])
    assert all(len(p) == 1 for p in priority.values()), priority  # the same for both datasets
    p = {name: values.pop() for name, values in priority.items()}
    # Longest first, as measured in the full run (results/benchmarks/): the proposed CNN's training, the shallow
    # CNN's, the transfer features, the classical baseline, the CKKS baseline; then everything else (seconds each).
    order = ["train:aes_cnn", "train:shallow_cnn", "transfer_features", "baseline_aes_classical", "baseline_he_linear"]
    assert [p[n] for n in order] == sorted((p[n] for n in order), reverse=True) and len({p[n] for n in order}) == 5
    # Jobs of seconds that gate long ones: the proposed CNN's training, the transfer features.
    assert p["encrypt"] >= p["train:aes_cnn"] and p["decrypt"] >= p["train:aes_cnn"]
    assert p["convert_efficientnet"] >= p["transfer_features"]
    rest = set(p) - set(order) - {"encrypt", "decrypt", "convert_efficientnet"}
    assert rest and all(p[n] < p["baseline_he_linear"] for n in rest), {n: p[n] for n in rest}
