"""DVC end to end on config/test.yaml: `dvc repro` builds what `snakemake` builds, both tools agree on what is
stale, the remote holds no plaintext and no key, a fresh clone is up to date after `cryptomed pull`, and
`dvc exp run -S train.epochs=N` with `dvc metrics diff` / `dvc plots diff` works.

The project is a temporary git repository made from the working tree (tests/workflow_helpers.make_project).
Tests run in file order; the last one changes the workspace (an experiment).
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from conftest import SHARED_DATA
from workflow_helpers import BIN, directly_stale_rules, make_project, planned_jobs, sh, tool_env

pytestmark = pytest.mark.e2e

DVC = str(BIN / "dvc")
SMK = (str(BIN / "python"), "-m", "snakemake", "--cores", "2")
DATASETS = ("chest_xray", "brain_mri")
DETERMINISTIC = ("aes_cnn", "plain_cnn", "shallow_cnn", "aes_classical", "resnet50_transfer")


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    if not (SHARED_DATA / "chest_xray_pneumonia" / "manifest.csv").is_file():
        pytest.skip(f"real data mirror not found at {SHARED_DATA}")
    root = tmp_path_factory.mktemp("dvc")
    proj = make_project(root / "project", root / "remote")
    env = tool_env(SHARED_DATA)
    sh(proj, DVC, "repro", env=env, timeout=2400)
    sh(proj, "git", "add", "-A")
    sh(proj, "git", "commit", "-q", "-m", "dvc repro")
    return proj, root / "remote", env


def rule_of(stage: str) -> str:
    name = stage.split("@")[0]
    for rule in ("train", "evaluate"):
        if name.startswith(rule + "_"):
            return rule
    return name


def stale_stages(proj: Path, env) -> tuple[set[str], set[str]]:
    """(stages `dvc status` reports, those plus every stage downstream of them: what `dvc repro` would run)."""
    from dvc.repo import Repo
    import networkx as nx

    status = json.loads(sh(proj, DVC, "status", "--json", env=env).stdout or "{}")
    with Repo(str(proj)) as repo:
        graph = repo.index.graph  # edges point from a stage to the stages it depends on
        by_name = {s.name: s for s in graph.nodes}  # (addressing is relative to the current directory)
        downstream = set()
        for name in status:
            downstream |= {s.name for s in nx.ancestors(graph, by_name[name])}
    return set(status), set(status) | downstream


def test_dvc_repro_builds_what_snakemake_builds(project, run):
    proj, _, _ = project
    wd, _ = run  # the same configuration run by `snakemake` alone (tests/conftest.py)

    def artefacts(root: Path) -> set[str]:
        return {p.relative_to(root).as_posix() for top in ("data", "results") for p in (root / top).rglob("*")
                if p.is_file() and p.name not in (".gitignore", "README.md") and "benchmarks" not in p.parts}

    assert artefacts(proj) == artefacts(wd)
    for ds in DATASETS:
        a, b = (np.load(r / f"data/preprocessed/{ds}/images.npz") for r in (proj, wd))
        assert all(np.array_equal(a[k], b[k]) for k in ("images", "labels", "ids", "splits"))
        for rel in (f"data/preprocessed/{ds}/split_manifest.csv",
                    *(f"results/{ds}/predictions/{m}.csv" for m in DETERMINISTIC)):
            assert (proj / rel).read_bytes() == (wd / rel).read_bytes(), rel
        he = [pd.read_csv(r / f"results/{ds}/predictions/he_linear.csv") for r in (proj, wd)]
        assert he[0]["predicted"].equals(he[1]["predicted"])  # CKKS adds noise to probabilities, not to classes


def test_nothing_is_stale_after_dvc_repro_in_either_tool(project):
    proj, _, env = project
    assert "Data and pipelines are up to date" in sh(proj, DVC, "status", env=env).stdout
    proc = sh(proj, *SMK, "-n", env=env)
    assert "Nothing to be done" in proc.stdout + proc.stderr
    again = sh(proj, DVC, "repro", env=env)
    assert "Running stage" not in again.stdout and "didn't change, skipping" in again.stdout


@pytest.mark.parametrize("section,key,value,expected", [
    ("train", "epochs", 3, {"train", "evaluate", "compare_baselines", "plot_results"}),
    ("preprocess", "image_size", 24,
     {"preprocess", "encrypt", "decrypt", "train", "evaluate", "baseline_aes_classical", "baseline_he_linear",
      "pretrain_backbone", "baseline_transfer", "compare_baselines", "plot_results"}),
    (None, None, None, set()),
])
def test_a_config_change_is_stale_to_the_same_jobs_in_both_tools(project, section, key, value, expected):
    proj, _, env = project
    config_file = proj / "config.yaml"
    original = config_file.read_text()
    try:
        if section:
            config = yaml.safe_load(original)
            config[section][key] = value
            config_file.write_text(yaml.safe_dump(config, sort_keys=False))
        direct, to_run = stale_stages(proj, env)
        proc = sh(proj, *SMK, "-n", env=env)
        jobs = planned_jobs(proc)
        jobs.pop("all", None)
        assert Counter(rule_of(s) for s in to_run) == jobs  # the same jobs, stage for job
        assert set(jobs) == expected
        assert {rule_of(s) for s in direct} == directly_stale_rules(proc)  # stale for the same reason
    finally:
        config_file.write_text(original)


def test_the_remote_holds_only_ciphertext_models_and_weights(project):
    from cryptomed.crypto import ContainerReader, RawKey, read_key_file
    from cryptomed.sharing import audit_remote

    proj, remote, env = project
    sh(proj, DVC, "push", env=env)
    pushed = {p.name for p in remote.rglob("*") if p.is_file()}
    lock = yaml.safe_load((proj / "dvc.lock").read_text())
    outs = {o["md5"]: o["path"] for stage in lock["stages"].values() for o in stage.get("outs", [])}
    pushed_paths = {outs[p.parent.name + p.name] for p in remote.rglob("*") if p.is_file()}  # files/md5/ab/cdef..
    assert len(pushed_paths) == len(pushed)
    assert all(p.startswith(("data/encrypted/", "results/pretrained/")) or "/models/" in p for p in pushed_paths), \
        pushed_paths
    assert {f"data/encrypted/{ds}.cmed" for ds in DATASETS} <= pushed_paths

    kek = read_key_file(proj / ".secrets/cryptomed.key")
    deks = []
    for ds in DATASETS:
        with ContainerReader(proj / f"data/encrypted/{ds}.cmed", RawKey(kek)) as reader:
            deks.append(reader._dek)  # the per-container data keys must not be there either
    images = [im for ds in DATASETS for im in np.load(proj / f"data/preprocessed/{ds}/images.npz")["images"]]
    result = audit_remote(remote, images, [kek, *deks])
    assert result["objects"] >= len(pushed) and result["image_blocks_indexed"] > 1000
    assert result["leaks"] == [], [str(leak) for leak in result["leaks"][:10]]


def test_a_fresh_clone_is_up_to_date_after_cryptomed_pull(project, tmp_path):
    proj, remote, env = project
    clone = tmp_path / "clone"
    sh(tmp_path, "git", "clone", "-q", proj, clone, env=env)
    sh(clone, DVC, "remote", "modify", "--local", "local", "url", remote, env=env)
    pulled = sh(clone, BIN / "python", "-m", "cryptomed", "pull", env=env)
    assert "never-pushed plaintext not present" in pulled.stdout
    proc = sh(clone, *SMK, "-n", env=env)
    assert "Nothing to be done" in proc.stdout + proc.stderr, proc.stdout[-3000:]
    for ds in DATASETS:
        rel = f"data/encrypted/{ds}.cmed"
        assert (clone / rel).read_bytes() == (proj / rel).read_bytes()
        assert (clone / f"results/{ds}/models/aes_cnn.keras").is_file()
    assert not (clone / "data/raw").exists() and not (clone / "data/preprocessed").exists()  # never pushed


def test_exp_run_set_param_then_metrics_and_plots_diff(project, tmp_path):
    proj, _, env = project
    # one dataset's comparison as the target keeps the test short; the whole pipeline is `dvc exp run -S ...`
    proc = sh(proj, DVC, "exp", "run", "-S", "train.epochs=1", "compare_baselines@chest_xray", env=env, timeout=1200)
    ran = {line.split("'")[1] for line in proc.stdout.splitlines() if line.startswith("Running stage")}
    assert ran == {"train_aes_cnn@chest_xray", "train_plain_cnn@chest_xray", "train_shallow_cnn@chest_xray",
                   "evaluate_aes_cnn@chest_xray", "evaluate_plain_cnn@chest_xray", "evaluate_shallow_cnn@chest_xray",
                   "compare_baselines@chest_xray"}
    # -S edited params.yaml, which config.yaml (Snakemake's configfile) links to
    assert (proj / "config.yaml").is_symlink() and yaml.safe_load((proj / "config.yaml").read_text())["train"]["epochs"] == 1
    diff = json.loads(sh(proj, DVC, "metrics", "diff", "--all", "--json", env=env).stdout)
    entry = diff["results/chest_xray/metrics/aes_cnn.json"]["accuracy.value"]
    assert set(entry) >= {"old", "new"} and 0 <= entry["new"] <= 1
    assert "results/chest_xray/metrics/aes_classical.json" not in json.loads(
        sh(proj, DVC, "metrics", "diff", "--json", env=env).stdout)  # untouched by the experiment
    sh(proj, DVC, "plots", "diff", "HEAD", "-o", tmp_path / "plots", env=env)
    html = (tmp_path / "plots/index.html").read_text()
    assert "aes_cnn_history.csv" in html and "workspace" in html and "HEAD" in html
    show = json.loads(sh(proj, DVC, "exp", "show", "--json", env=env).stdout)
    assert "train.epochs" in json.dumps(show) or '"epochs": 1' in json.dumps(show)
