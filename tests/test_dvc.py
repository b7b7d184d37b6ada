"""dvc.yaml and the Snakemake rules must not drift apart: same outputs and inputs, stage by rule."""

import json
import subprocess
import sys

from conftest import REPO

# DVC deps that Snakemake does not list as inputs: the code a stage runs (Snakemake reruns on code changes of
# its own accord only for the script, not for the package behind it).
CODE_DEPS = ("src/", "workflow/")
# baseline_transfer reads the backbone pretrained on the *other* dataset; DVC's matrix cannot say "other", so the
# stage lists both datasets' backbones of its architecture (one pretraining more than needed under `dvc repro`).
# transfer_features reads the downloaded tar and the split manifest only for datasets in
# baselines.transfer.efficientnet_lite0.native_input (all of them by default); a stage cannot list deps per item, so
# under another setting those two are listed but unread (they change only together with images.npz).
KNOWN_EXTRA_DEPS = {("baseline_transfer", "vgg16"), ("baseline_transfer", "resnet50")}


def snakemake_jobs() -> dict[str, tuple[str, frozenset]]:
    """Output file -> (rule, input files) of every job of the default configuration's DAG."""
    proc = subprocess.run([sys.executable, str(REPO / "tests/snakemake_jobs.py")], cwd=REPO, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    jobs = json.loads(proc.stdout.strip().splitlines()[-1])
    return {o: (j["rule"], frozenset(j["input"])) for j in jobs if j["rule"] != "all" for o in j["output"]}


def dvc_stages() -> dict[str, tuple[list[str], list[str]]]:
    """Stage name -> (deps, outs) of dvc.yaml."""
    from dvc.dependency.param import ParamsDependency
    from dvc.repo import Repo

    repo = Repo(str(REPO))
    try:
        return {s.name: ([str(d.def_path) for d in s.deps if not isinstance(d, ParamsDependency)],
                               [str(o.def_path) for o in s.outs])
                for s in repo.index.stages}
    finally:
        repo.close()


def test_every_snakemake_job_is_a_dvc_stage_with_the_same_outputs_and_inputs():
    jobs, stages = snakemake_jobs(), dvc_stages()
    outs = {o: name for name, (_, o_list) in stages.items() for o in o_list}
    assert set(outs) == set(jobs), (set(outs) ^ set(jobs))
    for name, (deps, o_list) in stages.items():
        rules = {jobs[o][0] for o in o_list}
        assert len(rules) == 1, (name, rules)  # one stage per Snakemake job
        rule = rules.pop()
        assert name.split("@")[0] == rule or name.startswith(rule + "_"), (name, rule)
        inputs = set().union(*(jobs[o][1] for o in o_list))
        covered = lambda path: any(path == d or path.startswith(d.rstrip("/") + "/") for d in deps)  # noqa: E731
        assert all(covered(i) for i in inputs), (name, sorted(i for i in inputs if not covered(i)))
        for d in deps:
            if d.startswith(CODE_DEPS) or (rule, d.split("/")[-1].split("_")[0]) in KNOWN_EXTRA_DEPS:
                continue
            assert any(i == d or i.startswith(d + "/") for i in inputs), (name, d)  # a dep the job really reads


def test_nothing_decrypted_is_ever_an_output():
    jobs = snakemake_jobs()
    assert not [o for o in jobs if o.startswith("data/") and not o.startswith(("data/raw/", "data/preprocessed/",
                                                                                "data/encrypted/"))]


def test_plaintext_outputs_are_never_pushed():
    from dvc.repo import Repo

    repo = Repo(str(REPO))
    try:
        for s in repo.index.stages:
            for o in s.outs:
                path = str(o.def_path)
                if path.startswith(("data/raw/", "data/preprocessed/")) and o.use_cache:
                    assert o.can_push is False, f"{path} is plaintext but could be pushed to a DVC remote"
    finally:
        repo.close()


def test_uncached_outputs_are_committed_to_git_instead():
    """`cache: false` outputs (metrics, reports, timings) live in git, so git must not ignore them."""
    from dvc.repo import Repo

    repo = Repo(str(REPO))
    try:
        uncached = [str(o.def_path) for s in repo.index.stages for o in s.outs if not o.use_cache]
    finally:
        repo.close()
    assert uncached
    proc = subprocess.run(["git", "check-ignore", "--no-index", *uncached], cwd=REPO, capture_output=True, text=True)
    assert proc.stdout.strip() == "", f"git ignores these uncached DVC outputs: {proc.stdout}"
