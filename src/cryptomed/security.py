"""Statistical security analysis of cipher images: what ECB, CBC, CTR and GCM leave of an X-ray or MRI.

For each sampled image the pixels are encrypted with AES-256 in each mode (PyCryptodome) and the
ciphertext body -- no IV, nonce or tag -- is read back as an image of the same size.  Reported:

* Shannon entropy of the 256-level histogram (ideal 8 bits);
* correlation of adjacent pixels, horizontal / vertical / diagonal (plain images ~0.9+, ideal 0);
* repeated 16-byte ciphertext blocks (ECB's leak: equal plaintext blocks give equal ciphertext);
* NPCR and UACI between the cipher images of two plaintexts that differ in one pixel, tested
  against the critical values of Wu, Noonan & Agaian, "NPCR and UACI Randomness Tests for Image
  Encryption", Cyber Journals JSAT, 2011 (computed for the image size, alpha = 0.05).

Modes with an IV/nonce are run twice: as used (a fresh random IV/nonce per encryption, as
cryptomed does for every record) and misused (the same IV/nonce for both plaintexts), to show that
the differential "randomness" of CBC/CTR/GCM comes from the nonce, not from the mode.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np
from Crypto.Cipher import AES

F = 255  # largest pixel value (8-bit images)

MODES = [  # (label, mode, nonce policy)
    ("ECB", "ECB", None),
    ("CBC, fresh IV", "CBC", "fresh"),
    ("CBC, reused IV", "CBC", "reused"),
    ("CTR, fresh nonce", "CTR", "fresh"),
    ("CTR, reused nonce", "CTR", "reused"),
    ("GCM, fresh nonce (cryptomed)", "GCM", "fresh"),
    ("GCM, reused nonce", "GCM", "reused"),
]


def encrypt_image(pixels: np.ndarray, mode: str, key: bytes, iv: bytes | None) -> np.ndarray:
    """Encrypt the pixel bytes and return the ciphertext body (first h*w bytes) as an image."""
    data = np.ascontiguousarray(pixels, dtype=np.uint8).tobytes()
    if mode in ("ECB", "CBC"):
        pad = 16 - len(data) % 16
        data += bytes([pad]) * pad  # PKCS#7; the padding block lies beyond h*w and is dropped
        cipher = AES.new(key, AES.MODE_ECB) if mode == "ECB" else AES.new(key, AES.MODE_CBC, iv=iv)
        body = cipher.encrypt(data)
    elif mode == "CTR":
        body = AES.new(key, AES.MODE_CTR, nonce=iv).encrypt(data)
    elif mode == "GCM":
        body, _tag = AES.new(key, AES.MODE_GCM, nonce=iv).encrypt_and_digest(data)
    else:
        raise ValueError(f"unknown mode {mode}")
    return np.frombuffer(body[: pixels.size], dtype=np.uint8).reshape(pixels.shape)


def iv_bytes(mode: str) -> int:
    return {"ECB": 0, "CBC": 16, "CTR": 8, "GCM": 12}[mode]


def entropy(img: np.ndarray) -> float:
    p = np.bincount(img.reshape(-1), minlength=256) / img.size
    p = p[p > 0]
    return float(-(p * np.log2(p)).sum())


def adjacent_correlation(img: np.ndarray) -> dict[str, float]:
    """Pearson correlation of all horizontally, vertically and diagonally adjacent pixel pairs."""
    x = img.astype(np.float64)
    pairs = {"horizontal": (x[:, :-1], x[:, 1:]), "vertical": (x[:-1, :], x[1:, :]), "diagonal": (x[:-1, :-1], x[1:, 1:])}
    out = {}
    for name, (a, b) in pairs.items():
        a, b = a.reshape(-1), b.reshape(-1)
        out[name] = float(np.corrcoef(a, b)[0, 1]) if a.std() > 0 and b.std() > 0 else float("nan")
    return out


def repeated_blocks(img: np.ndarray) -> float:
    """Fraction of 16-byte blocks that equal an earlier block."""
    data = img.tobytes()
    blocks = [data[i : i + 16] for i in range(0, len(data) - 15, 16)]
    return 1 - len(set(blocks)) / len(blocks) if blocks else 0.0


def npcr_uaci(c1: np.ndarray, c2: np.ndarray) -> tuple[float, float]:
    """NPCR and UACI in percent between two cipher images."""
    npcr = float((c1 != c2).mean() * 100)
    uaci = float((np.abs(c1.astype(np.int16) - c2.astype(np.int16)) / F).mean() * 100)
    return npcr, uaci


@dataclass
class CriticalValues:
    npcr_min: float  # NPCR must be >= this (percent)
    uaci_low: float  # UACI must lie in [low, high] (percent)
    uaci_high: float


def critical_values(height: int, width: int, alpha: float = 0.05) -> CriticalValues:
    """Wu, Noonan & Agaian (2011): NPCR* = (F - z(1-a) sqrt(F / MN)) / (F + 1), UACI* = mu -/+ z(1-a/2) sigma."""
    mn = height * width
    z1, z2 = NormalDist().inv_cdf(1 - alpha), NormalDist().inv_cdf(1 - alpha / 2)
    npcr = (F - z1 * math.sqrt(F / mn)) / (F + 1)
    mu = (F + 2) / (3 * F + 3)
    sigma = math.sqrt((F + 2) * (F**2 + 2 * F + 3) / (18 * (F + 1) ** 2 * mn * F))
    return CriticalValues(100 * npcr, 100 * (mu - z2 * sigma), 100 * (mu + z2 * sigma))


def analyse_image(pixels: np.ndarray, rng: np.random.Generator) -> tuple[list[dict], dict[str, np.ndarray]]:
    """Metrics for the plain image and every mode; also the cipher images (for figures)."""
    key = rng.bytes(32)
    h, w = pixels.shape
    changed = pixels.copy()
    r, c = int(rng.integers(h)), int(rng.integers(w))
    changed[r, c] = (int(changed[r, c]) + 1) % 256
    crit = critical_values(h, w)
    rows, images = [], {"Plain image": pixels}
    plain = {"mode": "Plain image", "entropy": entropy(pixels), **adjacent_correlation(pixels),
             "repeated_blocks": repeated_blocks(pixels)}
    rows.append(plain)
    for label, mode, policy in MODES:
        n = iv_bytes(mode)
        iv1 = rng.bytes(n) if n else None
        iv2 = (rng.bytes(n) if policy == "fresh" else iv1) if n else None
        c1, c2 = encrypt_image(pixels, mode, key, iv1), encrypt_image(changed, mode, key, iv2)
        npcr, uaci = npcr_uaci(c1, c2)
        rows.append({"mode": label, "entropy": entropy(c1), **adjacent_correlation(c1), "repeated_blocks": repeated_blocks(c1),
                     "npcr": npcr, "uaci": uaci, "npcr_pass": npcr >= crit.npcr_min,
                     "uaci_pass": crit.uaci_low <= uaci <= crit.uaci_high})
        images[label] = c1
    return rows, images


def summarise(per_image):
    """Mean of each metric per mode (and dataset), with NPCR/UACI pass rates."""
    import pandas as pd

    df = pd.DataFrame(per_image)
    order = ["Plain image"] + [m[0] for m in MODES]
    agg = {c: "mean" for c in ("entropy", "horizontal", "vertical", "diagonal", "repeated_blocks", "npcr", "uaci")}
    agg.update({"npcr_pass": "mean", "uaci_pass": "mean", "image": "count"})
    out = df.groupby(["dataset", "mode"], sort=False).agg(agg).reset_index().rename(
        columns={"image": "images", "npcr_pass": "npcr_pass_rate", "uaci_pass": "uaci_pass_rate"})
    out["mode"] = pd.Categorical(out["mode"], order)
    return out.sort_values(["dataset", "mode"]).reset_index(drop=True)


def sample_images(spec, raw_tar, raw_manifest, n: int, size: int, seed: int) -> list[tuple[str, str, np.ndarray]]:
    """``n`` test-split images stratified by class (seeded), decoded and resized (pad) to ``size``."""
    import tarfile

    from .data import decode_grayscale, read_raw_manifest, resize

    rows = [r for r in read_raw_manifest(raw_manifest, spec) if r["split"] == "test"]
    rng = np.random.default_rng(seed)
    by_class = {c: [r for r in rows if r["class_name"] == c] for c in spec.classes}
    picked = []
    for k in range(n):
        group = by_class[spec.classes[k % len(spec.classes)]]
        picked.append(group[int(rng.integers(len(group)))])
    wanted = {r["path"] for r in picked}
    blobs = {}
    with tarfile.open(raw_tar) as tf:
        for member in tf:
            if member.name in wanted:
                blobs[member.name] = tf.extractfile(member).read()
    return [(r["path"], r["class_name"], resize(decode_grayscale(blobs[r["path"]], f"{raw_tar}:{r['path']}"), size))
            for r in picked]


def summary_markdown(summary, crit: CriticalValues, size: int) -> str:
    lines = [f"# Cipher-image statistics, {size}x{size} images (means over the sample)", "",
             f"Critical values (Wu, Noonan & Agaian 2011, alpha 0.05, {size}x{size}): NPCR >= {crit.npcr_min:.4f}%, "
             f"UACI in [{crit.uaci_low:.4f}%, {crit.uaci_high:.4f}%]. Ideal: entropy 8, correlations 0, no repeated blocks.", "",
             "| Dataset | Mode | Entropy | Corr. H | Corr. V | Corr. D | Repeated blocks | NPCR % | UACI % | NPCR pass | UACI pass |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    fmt = lambda v, p=4: "–" if v != v else f"{v:.{p}f}"  # noqa: E731  (NaN -> dash)
    for r in summary.itertuples():
        lines.append(f"| {r.dataset} | {r.mode} | {fmt(r.entropy)} | {fmt(r.horizontal)} | {fmt(r.vertical)} | "
                     f"{fmt(r.diagonal)} | {fmt(r.repeated_blocks, 3)} | {fmt(r.npcr, 3)} | {fmt(r.uaci, 3)} | "
                     f"{'–' if r.npcr_pass_rate != r.npcr_pass_rate else f'{r.npcr_pass_rate:.0%}'} | "
                     f"{'–' if r.uaci_pass_rate != r.uaci_pass_rate else f'{r.uaci_pass_rate:.0%}'} |")
    return "\n".join(lines) + "\n"


def plot_modes(images: dict[str, np.ndarray], title: str, path) -> None:
    """The "ECB penguin" figure: the plain image next to its ECB, CBC, CTR and GCM cipher images."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .files import atomic_path

    keys = ["Plain image", "ECB", "CBC, fresh IV", "CTR, fresh nonce", "GCM, fresh nonce (cryptomed)"]
    fig, axes = plt.subplots(1, len(keys), figsize=(3.2 * len(keys), 3.6))
    for ax, k in zip(axes, keys):
        ax.imshow(images[k], cmap="gray", vmin=0, vmax=255, interpolation="nearest")
        ax.set_title(k, fontsize=9)
        ax.axis("off")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)


def plot_histograms_and_correlation(images: dict[str, np.ndarray], title: str, path) -> None:
    """Histograms (plain / ECB / GCM) and horizontal adjacent-pixel scatter (plain / GCM)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .files import atomic_path

    fig, axes = plt.subplots(1, 5, figsize=(17, 3.4))
    for ax, k in zip(axes[:3], ["Plain image", "ECB", "GCM, fresh nonce (cryptomed)"]):
        ax.bar(np.arange(256), np.bincount(images[k].reshape(-1), minlength=256), width=1.0, color="0.3")
        ax.set_title(f"histogram: {k}", fontsize=9)
        ax.set_xlim(0, 255)
    rng = np.random.default_rng(0)
    for ax, k in zip(axes[3:], ["Plain image", "GCM, fresh nonce (cryptomed)"]):
        img = images[k]
        idx = rng.integers(0, img[:, :-1].size, 3000)
        ax.scatter(img[:, :-1].reshape(-1)[idx], img[:, 1:].reshape(-1)[idx], s=1, alpha=0.4, color="0.2")
        ax.set_title(f"adjacent pixels (horizontal): {k}", fontsize=9)
        ax.set_xlim(0, 255)
        ax.set_ylim(0, 255)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)
