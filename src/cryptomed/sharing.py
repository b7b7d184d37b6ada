"""What may leave the data owner's machine: audit a DVC remote for plaintext images and key material.

A DVC remote is untrusted storage. cryptomed pushes ciphertext, models and pretrained weights there (metrics,
tables and figures go through git); raw and preprocessed images are ``push: false``. :func:`audit_remote`
checks that promise on the bytes actually stored: no 64-byte window of any preprocessed image and no key
(raw, hex or base64) in any object, nor inside any zip member (``.keras`` files are zip archives).

Windows are found with 32-byte blocks: every 64-byte window of an image fully contains an aligned 32-byte block,
so hashing the aligned blocks of the images and every 32-byte window of the remote finds each such window
(candidates are confirmed byte by byte and extended to the longest common run). Blocks with fewer than
``MIN_DISTINCT`` byte values (flat background, zero padding) carry no image content and match any file's zero
runs, so they are skipped.
"""

from __future__ import annotations

import base64
import io
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

BLOCK = 32
WINDOW = 64
MIN_DISTINCT = 8
_MULTIPLIERS = np.array([0x9E3779B97F4A7C15, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9, 0xD6E8FEB86659FD93],
                        dtype=np.uint64)
_CHUNK = 8 << 20


@dataclass(frozen=True)
class Leak:
    object: str        # remote object (and zip member) where it was found
    offset: int        # byte offset in that object
    length: int        # bytes in common
    what: str          # "image <n> at byte <k>" or "key material (<form>)"

    def __str__(self) -> str:
        return f"{self.object} @ {self.offset}: {self.length} bytes of {self.what}"


def _window_hashes(a: np.ndarray) -> np.ndarray:
    """A 64-bit hash of the 32-byte window starting at every offset of ``a`` (uint8)."""
    n = len(a) - BLOCK + 1
    if n <= 0:
        return np.zeros(0, np.uint64)
    h = np.zeros(n, np.uint64)
    with np.errstate(over="ignore"):
        for k, m in enumerate(_MULTIPLIERS):
            words = np.ndarray((n,), dtype="<u8", buffer=a, offset=8 * k, strides=(1,))
            h ^= words * m
    return h


class ImageIndex:
    """The informative aligned 32-byte blocks of a set of images, for :meth:`find` in arbitrary bytes."""

    def __init__(self, images: Iterable[np.ndarray]):
        self.images = [np.ascontiguousarray(im, dtype=np.uint8).reshape(-1) for im in images]
        hashes, owners, offsets = [], [], []
        for i, flat in enumerate(self.images):
            starts = np.arange(0, len(flat) - BLOCK + 1, BLOCK)
            if not len(starts):
                continue
            blocks = flat[: starts[-1] + BLOCK].reshape(-1, BLOCK)
            sorted_blocks = np.sort(blocks, axis=1)
            distinct = 1 + (np.diff(sorted_blocks.astype(np.int16), axis=1) != 0).sum(axis=1)
            keep = distinct >= MIN_DISTINCT
            hashes.append(_window_hashes(flat)[starts[keep]])
            owners.append(np.full(keep.sum(), i))
            offsets.append(starts[keep])
        self.hashes = np.concatenate(hashes) if hashes else np.zeros(0, np.uint64)
        order = np.argsort(self.hashes, kind="stable")
        self.hashes = self.hashes[order]
        self.owners = np.concatenate(owners)[order] if owners else np.zeros(0, int)
        self.offsets = np.concatenate(offsets)[order] if offsets else np.zeros(0, int)

    @property
    def blocks(self) -> int:
        return len(self.hashes)

    def find(self, data: bytes, name: str) -> list[Leak]:
        """Every run of >= 64 bytes that ``data`` shares with one image (one report per image and position)."""
        a = np.frombuffer(data, np.uint8)
        leaks, seen = [], set()
        for start in range(0, max(1, len(a) - BLOCK + 1), _CHUNK):
            h = _window_hashes(a[start : start + _CHUNK + BLOCK - 1])
            pos = np.searchsorted(self.hashes, h)
            pos[pos == len(self.hashes)] = 0
            for p in np.flatnonzero(self.hashes[pos] == h) if len(self.hashes) else []:
                j = pos[p]
                while j < len(self.hashes) and self.hashes[j] == h[p]:
                    leak = self._confirm(a, start + int(p), int(self.owners[j]), int(self.offsets[j]), name)
                    if leak and (leak.offset, leak.what) not in seen:
                        seen.add((leak.offset, leak.what))
                        leaks.append(leak)
                    j += 1
        return leaks

    def _confirm(self, a: np.ndarray, at: int, owner: int, off: int, name: str) -> Leak | None:
        img = self.images[owner]
        if not np.array_equal(a[at : at + BLOCK], img[off : off + BLOCK]):
            return None  # a hash collision
        left = 0
        while left < min(at, off) and a[at - left - 1] == img[off - left - 1]:
            left += 1
        right = BLOCK
        while at + right < len(a) and off + right < len(img) and a[at + right] == img[off + right]:
            right += 1
        if left + right < WINDOW:
            return None
        return Leak(name, at - left, left + right, f"image {owner} at byte {off - left}")


def key_forms(secret: bytes) -> dict[str, bytes]:
    """The spellings of a key that could end up in a file."""
    return {"raw": secret, "hex": secret.hex().encode(), "HEX": secret.hex().upper().encode(),
            "base64": base64.b64encode(secret).rstrip(b"="), "base64url": base64.urlsafe_b64encode(secret).rstrip(b"=")}


def iter_objects(root: Path) -> Iterator[tuple[str, bytes]]:
    """Every file under ``root`` and, for zip archives, every member's uncompressed bytes as well."""
    for path in sorted(p for p in Path(root).rglob("*") if p.is_file()):
        data = path.read_bytes()
        name = str(path.relative_to(root))
        yield name, data
        if data[:4] == b"PK\x03\x04":
            try:
                with zipfile.ZipFile(io.BytesIO(data)) as zf:
                    for member in zf.namelist():
                        yield f"{name}!{member}", zf.read(member)
            except zipfile.BadZipFile:
                pass


def audit_remote(root: Path, images: Iterable[np.ndarray], secrets: Iterable[bytes] = ()) -> dict:
    """Scan every object under ``root``; return counts and the leaks found (an empty list is the pass)."""
    index = ImageIndex(images)
    forms = {value: f"key {i}, {form}" for i, s in enumerate(secrets) for form, value in key_forms(s).items()}
    forms = {label: value for value, label in forms.items()}  # one spelling once (base64 == base64url often)
    leaks: list[Leak] = []
    n_objects = n_bytes = 0
    for name, data in iter_objects(Path(root)):
        n_objects += 1
        n_bytes += len(data)
        leaks += index.find(data, name)
        for label, value in forms.items():
            at = data.find(value)
            if at >= 0:
                leaks.append(Leak(name, at, len(value), f"key material ({label})"))
    return {"objects": n_objects, "bytes": n_bytes, "image_blocks_indexed": index.blocks,
            "images": len(index.images), "key_forms": len(forms), "leaks": leaks}


class PullError(RuntimeError):
    """The pulled workspace does not match dvc.lock beyond the plaintext that is never pushed."""


def _run(cmd: list[str], cwd: Path) -> str:
    import subprocess

    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise PullError(f"{' '.join(cmd[2:])} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return proc.stdout


def dvc_outputs(project: Path) -> dict[str, bool]:
    """Every cached output of dvc.yaml -> whether it may be pushed (``push: false`` marks the plaintext images)."""
    from dvc.repo import Repo

    with Repo(str(project)) as repo:
        return {str(o.def_path): bool(o.can_push) for s in repo.index.stages for o in s.outs if o.use_cache}


def _never_pushed(path: str, state: str, outputs: dict[str, bool]) -> bool:
    """Is this difference only never-pushed plaintext missing? An unpushed output absent, or a directory (a dep
    such as ``data/raw``) holding unpushed outputs only, whatever git left in it (DVC's .gitignore files)."""
    if path in outputs:
        return not outputs[path] and state in ("deleted", "not in cache")
    under = [pushable for out, pushable in outputs.items() if out.startswith(path.rstrip("/") + "/")]
    return bool(under) and not any(under)


def pull(project: Path = Path(".")) -> dict:
    """``dvc pull`` what the remote has, check that only never-pushed plaintext is missing, then mark the
    pulled outputs up to date for Snakemake (``snakemake --touch``: git and DVC do not keep modification
    times, and Snakemake would otherwise rerun jobs whose outputs look older than their inputs or scripts)."""
    import json
    import sys

    project = Path(project)
    _run([sys.executable, "-m", "dvc", "pull", "--allow-missing"], project)
    status = json.loads(_run([sys.executable, "-m", "dvc", "status", "--json"], project) or "{}")
    outputs = dvc_outputs(project)
    missing, problems = set(), []
    for stage, changes in status.items():
        for change in changes:
            if not isinstance(change, dict):
                problems.append(f"{stage}: {change}")
                continue
            for kind, paths in change.items():
                for path, state in paths.items() if isinstance(paths, dict) else [(str(paths), kind)]:
                    if _never_pushed(path, state, outputs):
                        missing.add(path)
                    else:
                        problems.append(f"{stage}: {kind} {path} {state}")
    if problems:
        raise PullError("the pulled workspace does not match dvc.lock (run `dvc repro` or check out the matching "
                        "commit):\n  " + "\n  ".join(problems))
    _run([sys.executable, "-m", "snakemake", "--touch", "--cores", "1", "--quiet"], project)
    return {"missing_plaintext": sorted(missing)}
