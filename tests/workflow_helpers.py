"""Running the workflow in throwaway copies: Snakemake on config/test.yaml, and a git + DVC project."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import yaml

from conftest import REPO

BIN = Path(sys.executable).parent
WORKFLOW_FILES = ("Snakefile", "config.yaml", "config", "workflow", "envs", "src", "profiles", "benchmarks")


def copy_workflow(dest: Path) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    for name in WORKFLOW_FILES:
        src = REPO / name
        if src.is_dir():  # not __pycache__: another test worker may be writing a .pyc there right now
            shutil.copytree(src, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(src, dest / name)
    return dest


def tool_env(mirror: Path | None = None, extra: dict | None = None) -> dict:
    """The environment for snakemake/dvc subprocesses: no developer key, TensorFlow, this venv's tools first."""
    env = {k: v for k, v in os.environ.items() if k not in ("CRYPTOMED_KEY", "CRYPTOMED_PASSPHRASE", "DATA_MIRROR")}
    env.update(KERAS_BACKEND="tensorflow", PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}",
               GIT_AUTHOR_NAME="test", GIT_AUTHOR_EMAIL="test@example.org", GIT_COMMITTER_NAME="test",
               GIT_COMMITTER_EMAIL="test@example.org")
    if mirror:
        env["DATA_MIRROR"] = str(mirror)
    env.update(extra or {})
    return env


def snakemake(workdir: Path, *targets, configs=("config/test.yaml",), extra=(), mirror=None, env_extra=None,
              timeout=900, entry=("-m", "snakemake")):
    # targets first: --configfile takes several values and would swallow them
    cmd = [sys.executable, *entry, *targets, "--cores", "2", *extra]
    if configs:
        cmd += ["--configfile", *configs]
    return subprocess.run(cmd, cwd=workdir, env=tool_env(mirror, env_extra), capture_output=True, text=True,
                          timeout=timeout)


def planned_jobs(proc) -> Counter:
    """Rule -> number of jobs, from the 'Job stats' table of a Snakemake dry run (empty when nothing to do)."""
    out = (proc.stdout + proc.stderr).splitlines()
    start = next((i for i, line in enumerate(out) if line.startswith("Job stats")), None)
    jobs = Counter()
    if start is None:
        return jobs
    for line in out[start + 3 :]:
        parts = line.split()
        if len(parts) != 2 or parts[0] == "total":
            break
        jobs[parts[0]] = int(parts[1])
    return jobs


def directly_stale_rules(proc) -> set[str]:
    """Rules with a job stale for its own reasons (params, inputs, code...), not only because an upstream job
    reruns: the 'Reasons' summary of a Snakemake dry run."""
    text = proc.stdout + proc.stderr
    if "Reasons:" not in text:
        return set()
    block = text.split("Reasons:", 1)[1].splitlines()[1:]
    rules, reason = set(), None
    for line in block:
        if re.match(r"^    \S.*:$", line):
            reason = line.strip().rstrip(":")
        elif line.startswith("        ") and reason:
            if reason != "input files updated by another job":
                rules.update(r.strip() for r in line.split(","))
        elif line.strip() and not line.startswith("    "):
            break
    return rules - {"all"}


def deep_merge(base: dict, override: dict) -> dict:
    """``override`` on top of ``base``, with keys in the order Snakemake's own merge gives them for
    `--configfile override` (override's keys first, then base's others, at every level). Snakemake compares
    `params:` by their text, so a run with `--configfile config/test.yaml` and one on the merged file alone see
    the same params only if the order is the same."""
    out = {}
    for key, value in override.items():
        out[key] = deep_merge(base[key], value) if isinstance(value, dict) and isinstance(base.get(key), dict) else value
    for key, value in base.items():
        out.setdefault(key, value)
    return out


def sh(cwd: Path, *cmd, env: dict | None = None, timeout: int = 600, check: bool = True):
    proc = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env or tool_env(), capture_output=True, text=True,
                          timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, cmd))} exited {proc.returncode}:\n"
                             f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


def make_project(dest: Path, remote: Path) -> Path:
    """The working tree (tracked and untracked files, not ignored ones; no results) as a new git + DVC project
    whose config.yaml is config.yaml + config/test.yaml, with its DVC remote in ``remote``."""
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO, capture_output=True,
                           check=True).stdout.decode().split("\0")
    for rel in filter(None, files):
        src = REPO / rel
        if rel.startswith("results/") or not os.path.lexists(src):
            continue
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dest / rel, follow_symlinks=False)
    config = deep_merge(yaml.safe_load((REPO / "config.yaml").read_text()),
                        yaml.safe_load((REPO / "config/test.yaml").read_text()))
    (dest / "config.yaml").write_text("# config.yaml + config/test.yaml (DVC test project)\n"
                                      + yaml.safe_dump(config, sort_keys=False))
    sh(dest, "git", "init", "-q", "-b", "main")
    sh(dest, "git", "add", "-A")
    sh(dest, "git", "commit", "-q", "-m", "test project")
    sh(dest, BIN / "dvc", "remote", "modify", "--local", "local", "url", remote)
    return dest


def copy_run(src: Path, dest: Path) -> Path:
    """A copy of a finished run (project, outputs, Snakemake's metadata) with modification times kept, so that
    Snakemake sees it as up to date: for tests that change the project for good."""
    shutil.copytree(src, dest, symlinks=True)
    return dest
