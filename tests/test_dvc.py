"""dvc.yaml and the Snakemake rules must not drift apart: same outputs, stage by rule."""

import subprocess
import sys

from conftest import REPO


def snakemake_outputs() -> dict[str, str]:
    proc = subprocess.run([sys.executable, "-m", "snakemake", "--cores", "1", "--summary"], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = [line.split("\t") for line in proc.stdout.splitlines()[1:] if "\t" in line]
    return {r[0]: r[2] for r in rows}


def dvc_outputs() -> dict[str, str]:
    from dvc.repo import Repo

    repo = Repo(str(REPO))
    try:
        return {str(o.def_path): s.addressing.split("@")[0] for s in repo.index.stages for o in s.outs}
    finally:
        repo.close()


def test_every_snakemake_output_is_a_dvc_output_of_the_matching_stage():
    smk, dvc = snakemake_outputs(), dvc_outputs()
    decrypted = {p for p in smk if p.startswith("data/decrypted/")}
    assert decrypted, "the workflow should have temporary decrypted outputs"
    assert not decrypted & set(dvc), "decrypted plaintext must never be a DVC output"
    assert set(smk) - decrypted == set(dvc)
    for path, stage in dvc.items():
        rule = smk[path]
        assert stage == rule or stage.startswith(rule + "_"), (path, stage, rule)


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
