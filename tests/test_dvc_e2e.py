"""DVC end to end on config/test.yaml, on the shared Snakemake run (tests/conftest.py `run`) — the path a user
takes: `snakemake --cores all`, then `dvc commit` to record the run, then `dvc push`. Afterwards neither
`snakemake -n` nor `dvc status` has anything to do (`cache.type: hardlink` in .dvc/config keeps each output's
inode and modification time); both tools agree on what a config change makes stale; `dvc repro` of a stage
rebuilds the same bytes; the remote holds no plaintext and no key; a fresh clone is up to date after
`cryptomed pull`; `dvc exp run -S train.epochs=N` with `dvc metrics diff` / `dvc plots diff` works.

The project is a copy of the shared run (a temporary git repository made from the working tree,
tests/workflow_helpers.make_project). Tests run in file order; the last one changes the workspace (an experiment).
"""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import yaml

from conftest import SHARED_DATA
from workflow_helpers import BIN, copy_run, directly_stale_rules, planned_jobs, sh, tool_env

pytestmark = pytest.mark.e2e

DVC = str(BIN / "dvc")
SMK = (str(BIN / "python"), "-m", "snakemake", "--cores", "2")
DATASETS = ("chest_xray", "brain_mri")


@pytest.fixture(scope="module")
def project(run, tmp_path_factory):
    """A copy of the shared Snakemake run, recorded with `dvc commit` and committed to git (no second run)."""
    wd, _ = run
    root = tmp_path_factory.mktemp("dvc")
    proj = copy_run(wd, root / "project")
    env = tool_env(SHARED_DATA)
    sh(proj, DVC, "remote", "modify", "--local", "local", "url", root / "remote", env=env)
    before = {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in cached_outputs(proj)}
    sh(proj, DVC, "commit", "--force", env=env)
    after = {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in cached_outputs(proj)}
    sh(proj, "git", "add", "-A")
    sh(proj, "git", "commit", "-q", "-m", "snakemake --cores all; dvc commit")
    return proj, root / "remote", env, (before, after)


def cached_outputs(proj: Path) -> list[Path]:
    """The outputs DVC keeps in its cache (not `cache: false`), as dvc.yaml lists them for this configuration."""
    from dvc.repo import Repo

    with Repo(str(proj)) as repo:
        return sorted(proj / str(o.fs_path).removeprefix(str(proj) + "/") for stage in repo.index.stages
                      for o in stage.outs if o.use_cache)


# Methods config/test.yaml turns on that dvc.yaml has no stages for: plain_cnn is off by default (lossless.json
# shows that AES changes nothing) but the shared run trains it for test_workflow's identical-prediction check.
NOT_IN_DVC = ("plain_cnn",)
# Rules dvc.yaml has no stage for: fine-tuning runs only where finetune.datasets lists a dataset (config/test.yaml,
# the GPU configurations), and dvc.yaml describes the default configuration, which lists none.
RULES_NOT_IN_DVC = ("finetune_efficientnet",)


def jobs_with_stages(proc) -> Counter:
    """Rule -> jobs a Snakemake dry run plans, less the jobs of methods and rules that dvc.yaml has no stages for."""
    jobs = planned_jobs(proc)
    for rule in RULES_NOT_IN_DVC:
        jobs.pop(rule, None)
    text = proc.stdout + proc.stderr
    for m in re.finditer(r"^(?:local)?rule (\w+):\n((?:    .*\n)+)", text, re.M):
        wildcards = re.search(r"^    wildcards: (.*)$", m.group(2), re.M)
        if wildcards and any(f"method={x}" in wildcards.group(1).split(", ") for x in NOT_IN_DVC):
            jobs[m.group(1)] -= 1
    return +jobs


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


def test_dvc_commit_keeps_every_output_in_place(project):
    """`dvc commit` (cache.type: hardlink) moves each output into the cache and links it back: same inode, same
    modification time, so Snakemake's view of the run does not change."""
    proj, _, _, (before, after) = project
    assert len(before) >= 2 * 8 and set(before) == set(after)  # raw, preprocessed, containers, models per dataset
    assert {p for p in before if before[p][1] != after[p][1]} == set()
    assert {p for p in before if before[p][0] != after[p][0]} == set()
    for p in before:
        assert p.stat().st_nlink >= 2, p  # a link into .dvc/cache, not a copy


def test_nothing_is_stale_after_run_and_dvc_commit_in_either_tool(project):
    proj, _, env, _ = project
    assert "Data and pipelines are up to date" in sh(proj, DVC, "status", env=env).stdout
    proc = sh(proj, *SMK, "-n", env=env)
    assert "Nothing to be done" in proc.stdout + proc.stderr, (proc.stdout + proc.stderr)[-3000:]
    again = sh(proj, DVC, "repro", env=env)
    assert "Running stage" not in again.stdout and "didn't change, skipping" in again.stdout


def test_dvc_repro_of_a_stage_rebuilds_the_same_bytes_through_snakemake(project):
    """A DVC stage runs its Snakemake job (`snakemake --force <target>`): forced, it writes what Snakemake wrote,
    and afterwards both tools are still up to date."""
    proj, _, env, _ = project
    rels = [f"results/chest_xray/{f}" for f in ("comparison.csv", "comparison.md", "paired_tests.json")]
    old = {rel: (proj / rel).read_bytes() for rel in rels}
    proc = sh(proj, DVC, "repro", "--force", "--single-item", "compare_baselines@chest_xray", env=env)
    assert "Running stage 'compare_baselines@chest_xray'" in proc.stdout
    assert {rel: (proj / rel).read_bytes() for rel in rels} == old
    assert "Data and pipelines are up to date" in sh(proj, DVC, "status", env=env).stdout
    smk = sh(proj, *SMK, "-n", env=env)
    assert "Nothing to be done" in smk.stdout + smk.stderr, (smk.stdout + smk.stderr)[-3000:]


@pytest.mark.parametrize("section,key,value,expected", [
    ("train", "epochs", 3, {"train", "evaluate", "baseline_ensemble", "compare_baselines", "plot_results"}),
    ("preprocess", "image_size", 24,
     {"preprocess", "encrypt", "decrypt", "train", "evaluate", "baseline_aes_classical", "baseline_he_linear",
      "transfer_features", "baseline_efficientnet_transfer", "baseline_ensemble", "compare_baselines",
      "plot_results"}),
    (None, None, None, set()),
])
def test_a_config_change_is_stale_to_the_same_jobs_in_both_tools(project, section, key, value, expected):
    proj, _, env, _ = project
    config_file = proj / "config.yaml"
    original = config_file.read_text()
    try:
        if section:
            config = yaml.safe_load(original)
            config[section][key] = value
            config_file.write_text(yaml.safe_dump(config, sort_keys=False))
        direct, to_run = stale_stages(proj, env)
        proc = sh(proj, *SMK, "-n", env=env)
        jobs = jobs_with_stages(proc)
        jobs.pop("all", None)
        assert Counter(rule_of(s) for s in to_run) == jobs  # the same jobs, stage for job
        assert set(jobs) == expected
        assert {rule_of(s) for s in direct} == directly_stale_rules(proc)  # stale for the same reason
    finally:
        config_file.write_text(original)


def test_the_remote_holds_only_ciphertext_models_and_weights(project):
    from cryptomed.crypto import ContainerReader, RawKey, read_key_file
    from cryptomed.sharing import audit_remote

    proj, remote, env, _ = project
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
    proj, remote, env, _ = project
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
    proj, _, env, _ = project
    # the proposed method on one dataset as the target keeps the test short (a target runs what it needs and no
    # more); the whole pipeline is `dvc exp run -S ...`
    proc = sh(proj, DVC, "exp", "run", "-S", "train.epochs=1", "evaluate_aes_cnn@chest_xray", env=env, timeout=1200)
    ran = {line.split("'")[1] for line in proc.stdout.splitlines() if line.startswith("Running stage")}
    assert ran == {"train_aes_cnn@chest_xray", "evaluate_aes_cnn@chest_xray"}
    # -S edited params.yaml, which config.yaml (Snakemake's configfile) links to
    assert (proj / "config.yaml").is_symlink() and yaml.safe_load((proj / "config.yaml").read_text())["train"]["epochs"] == 1
    diff = json.loads(sh(proj, DVC, "metrics", "diff", "--all", "--json", env=env).stdout)
    entry = diff["results/chest_xray/metrics/aes_cnn.json"]["accuracy.value"]
    assert set(entry) >= {"old", "new"} and 0 <= entry["new"] <= 1
    changed = json.loads(sh(proj, DVC, "metrics", "diff", "--json", env=env).stdout)
    assert "results/chest_xray/metrics/aes_cnn.json" in changed
    assert "results/chest_xray/metrics/shallow_cnn.json" not in changed  # not a dependency of the target: not rerun
    sh(proj, DVC, "plots", "diff", "HEAD", "-o", tmp_path / "plots", env=env)
    html = (tmp_path / "plots/index.html").read_text()
    assert "aes_cnn_history.csv" in html and "workspace" in html and "HEAD" in html
    show = json.loads(sh(proj, DVC, "exp", "show", "--json", env=env).stdout)
    assert "train.epochs" in json.dumps(show) or '"epochs": 1' in json.dumps(show)
