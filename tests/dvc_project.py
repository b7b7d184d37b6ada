"""A throwaway cryptomed project for DVC tests: the working tree's files (no results, no data), config/test.yaml
merged into config.yaml, its own git repository and a local DVC remote."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from conftest import REPO

BIN = Path(sys.executable).parent


def deep_merge(base: dict, override: dict) -> dict:
    out = dict(base)
    for key, value in override.items():
        out[key] = deep_merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def tool_env(mirror: Path | None = None) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("CRYPTOMED_KEY", "CRYPTOMED_PASSPHRASE", "DATA_MIRROR")}
    env.update(KERAS_BACKEND="tensorflow", PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}",
               GIT_AUTHOR_NAME="test", GIT_AUTHOR_EMAIL="test@example.org", GIT_COMMITTER_NAME="test",
               GIT_COMMITTER_EMAIL="test@example.org")
    if mirror:
        env["DATA_MIRROR"] = str(mirror)
    return env


def sh(cwd: Path, *cmd: str, env: dict | None = None, timeout: int = 600, check: bool = True):
    proc = subprocess.run(cmd, cwd=cwd, env=env or tool_env(), capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} exited {proc.returncode}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


def make_project(dest: Path, remote: Path) -> Path:
    """Copy the working tree (tracked and untracked, not ignored; no results) and make it a git + DVC project."""
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
    sh(dest, str(BIN / "dvc"), "remote", "modify", "--local", "local", "url", str(remote))
    return dest
