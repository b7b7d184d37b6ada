"""How the default run fills the 2 cores: no job asks for more cores than config threads_per_job, and the longest
jobs, and the short ones that gate them, start first (common.smk PRIORITY; docs/performance.md)."""

import json
import subprocess
import sys

import pytest
import yaml

from conftest import REPO


def dag_jobs(overrides: dict | None = None) -> list[dict]:
    """The default configuration's jobs (config keys in ``overrides`` replaced), DAG built for --cores 2."""
    proc = subprocess.run([sys.executable, str(REPO / "tests/snakemake_jobs.py"), json.dumps(overrides or {})],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return [j for j in json.loads(proc.stdout.strip().splitlines()[-1]) if j["rule"] != "all"]


@pytest.fixture(scope="module")
def default_jobs() -> list[dict]:
    return dag_jobs()


def job_name(job: dict) -> str:
    if job["rule"] in ("train", "evaluate"):  # results/<dataset>/models/<method>.keras, .../metrics/<method>.json
        return f'{job["rule"]}:{job["output"][0].rsplit("/", 1)[1].split(".")[0]}'
    return job["rule"]


def test_no_job_asks_for_more_cores_than_threads_per_job(default_jobs):
    """A job asking for 2 cores waits until both are free: with encrypt at crypto.threads (2) one core idled for
    minutes while a single-thread job finished, and the proposed CNN's training (the longest job) waited behind."""
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    assert {j["rule"] for j in default_jobs} >= {"encrypt", "decrypt", "preprocess", "train", "evaluate"}
    assert {job_name(j): j["threads"] for j in default_jobs if j["threads"] > params["threads_per_job"]} == {}
    # The same DAG (--cores 2) lets them have 2 where the config allows it: the cap above is the config's.
    wider = dag_jobs({"threads_per_job": 2, "crypto": {**params["crypto"], "threads": 2}})
    assert {j["rule"]: j["threads"] for j in wider if j["rule"] in ("encrypt", "decrypt")} == {"encrypt": 2,
                                                                                               "decrypt": 2}


def test_the_longest_jobs_and_their_gates_start_first(default_jobs):
    priority: dict[str, set] = {}
    for j in default_jobs:
        priority.setdefault(job_name(j), set()).add(j["priority"])
    assert all(len(p) == 1 for p in priority.values()), priority  # the same for both datasets
    p = {name: values.pop() for name, values in priority.items()}
    # Longest first, as measured in the full run (results/benchmarks/): the proposed CNN's training, the shallow
    # CNN's, the transfer features, the classical baseline, the CKKS baseline; then everything else (seconds each).
    order = ["train:aes_cnn", "train:shallow_cnn", "transfer_features", "baseline_aes_classical", "baseline_he_linear"]
    gates = {"encrypt": "train:aes_cnn", "decrypt": "train:aes_cnn", "convert_efficientnet": "transfer_features"}
    assert set(order) | set(gates) <= set(p), sorted(set(order) | set(gates) - set(p))
    assert [p[n] for n in order] == sorted((p[n] for n in order), reverse=True) and len({p[n] for n in order}) == 5
    assert all(p[gate] >= p[job] for gate, job in gates.items()), {g: p[g] for g in gates}  # seconds, gating a job
    rest = set(p) - set(order) - set(gates)
    assert rest and all(p[n] < p["baseline_he_linear"] for n in rest), {n: p[n] for n in rest}
