"""Near-duplicate detection: the same image, flipped, rotated, re-encoded or re-exposed.

Each image becomes a small thumbnail (``size``×``size``, area average), normalised to zero mean and unit
variance, so a brightness or contrast change (an affine change of intensities) leaves it unchanged and
resampling or JPEG noise moves it little. The distance between two images is the root-mean-square
difference of their normalised thumbnails, minimised over the eight flips and rotations of the square
(the dihedral group D4) applied to one of them::

    d(a, b) = min_t  ||z(a) - z(t(b))|| / sqrt(size²)  =  min_t sqrt(2 (1 - corr(a, t(b))))

0 is the same picture; unrelated images sit near 1 or above (uncorrelated: sqrt(2)). All distances come from
one matrix product per block of queries (BLAS), so 7,000 images against 7,000 take seconds, not a
quadratic Python loop. The threshold is a config value chosen from the distribution on the real data (see
``docs/leakage.md``).
"""

from __future__ import annotations

import numpy as np
from PIL import Image

# The eight symmetries of the square, in this order; index 0 is the identity.
TRANSFORMS = ("identity", "rot90", "rot180", "rot270", "flip_lr", "flip_ud", "transpose", "anti_transpose")


def dihedral(images: np.ndarray) -> np.ndarray:
    """``(8, N, H, W)``: every image under each of :data:`TRANSFORMS` (square images)."""
    t = np.transpose(images, (0, 2, 1))
    return np.stack([
        images,
        np.rot90(images, 1, axes=(1, 2)),
        np.rot90(images, 2, axes=(1, 2)),
        np.rot90(images, 3, axes=(1, 2)),
        images[:, :, ::-1],
        images[:, ::-1, :],
        t,
        np.rot90(t, 2, axes=(1, 2)),
    ])


def thumbnails(images: np.ndarray, size: int = 16, normalise: bool = True) -> np.ndarray:
    """``(N, size, size)`` float32 thumbnails (area average), each normalised to mean 0 and unit variance (unless
    ``normalise`` is False: then the grey levels are kept, as cryptomed.shift needs).

    A flat image (no variance) stays all zeros: its distance to anything is sqrt(2), never a match by accident.
    """
    images = np.asarray(images)
    if images.ndim != 3 or images.shape[1] != images.shape[2]:
        raise ValueError(f"expected (N, S, S) square grayscale images, got shape {images.shape}")
    n = len(images)
    out = np.empty((n, size, size), dtype=np.float32)
    s = images.shape[1]
    if s % size == 0:  # exact block average, vectorised
        k = s // size
        out[:] = images.reshape(n, size, k, size, k).astype(np.float32).mean(axis=(2, 4))
    else:
        for i, img in enumerate(images):
            out[i] = np.asarray(Image.fromarray(img).resize((size, size), Image.Resampling.BOX), dtype=np.float32)
    if not normalise:
        return out
    flat = out.reshape(n, size * size)
    flat -= flat.mean(axis=1, keepdims=True)
    std = flat.std(axis=1, keepdims=True)
    np.divide(flat, std, out=flat, where=std > 1e-6)
    flat[(std <= 1e-6).ravel()] = 0.0
    return out


def nearest(queries: np.ndarray, refs: np.ndarray, size: int = 16, exclude_self: bool = False,
            block: int = 1024) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each query image: the distance to its nearest reference under any flip or rotation.

    Returns ``(distance, ref_index, transform_index)`` arrays of length ``len(queries)`` (distance ``inf``
    and index -1 where there is no reference). With ``exclude_self`` the two arrays are the same images and a
    query is not compared with itself.
    """
    q = thumbnails(queries, size)
    r = thumbnails(refs, size).reshape(len(refs), size * size)
    n, dim = len(q), size * size
    dist = np.full(n, np.inf, dtype=np.float64)
    ref_idx = np.full(n, -1, dtype=np.int64)
    trans = np.full(n, -1, dtype=np.int64)
    if n == 0 or len(r) == 0:
        return dist, ref_idx, trans
    qt = dihedral(q).reshape(8, n, dim)  # (8, N, D)
    for start in range(0, n, block):
        stop = min(start + block, n)
        corr = np.einsum("tnd,md->tnm", qt[:, start:stop], r, optimize=True) / dim  # (8, b, M)
        if exclude_self:
            rows = np.arange(start, stop)
            corr[:, rows - start, rows] = -np.inf
        flat = corr.transpose(1, 0, 2).reshape(stop - start, -1)  # (b, 8*M)
        best = flat.argmax(axis=1)
        c = flat[np.arange(stop - start), best]
        dist[start:stop] = np.sqrt(np.maximum(0.0, 2.0 * (1.0 - c)))
        trans[start:stop] = best // len(r)
        ref_idx[start:stop] = best % len(r)
    return dist, ref_idx, trans


def distance(a: np.ndarray, b: np.ndarray, size: int = 16) -> float:
    """Distance between two images as they are (identity transform only)."""
    za, zb = thumbnails(np.stack([a, b]), size).reshape(2, -1)
    return float(np.sqrt(max(0.0, 2.0 * (1.0 - float(za @ zb) / za.size))))


def pairs_within(images: np.ndarray, threshold: float, size: int = 16,
                 block: int = 1024) -> list[tuple[int, int, float, int]]:
    """Every pair ``(i, j, distance, transform)`` with ``i < j`` whose distance is at most ``threshold``."""
    q = thumbnails(images, size)
    n, dim = len(q), size * size
    if n < 2:
        return []
    r = q.reshape(n, dim)
    qt = dihedral(q).reshape(8, n, dim)
    found = []
    cmin = 1.0 - threshold**2 / 2.0  # d <= threshold  <=>  corr >= cmin
    for start in range(0, n, block):
        stop = min(start + block, n)
        corr = np.einsum("tnd,md->tnm", qt[:, start:stop], r, optimize=True) / dim
        best_t = corr.argmax(axis=0)  # (b, M)
        best = np.take_along_axis(corr, best_t[None], axis=0)[0]
        ii, jj = np.nonzero(best >= cmin)
        ii = ii + start
        keep = ii < jj
        for i, j in zip(ii[keep], jj[keep]):
            c = best[i - start, j]
            found.append((int(i), int(j), float(np.sqrt(max(0.0, 2.0 * (1.0 - c)))), int(best_t[i - start, j])))
    return found


def groups(n: int, pairs) -> np.ndarray:
    """Connected components (union-find) of ``n`` items linked by ``pairs`` of indices: a group id per item."""
    parent = np.arange(n)

    def find(x):
        root = x
        while parent[root] != root:
            root = parent[root]
        while parent[x] != root:
            parent[x], x = root, parent[x]
        return root

    for i, j, *_ in pairs:
        ri, rj = find(i), find(j)
        if ri != rj:
            parent[max(ri, rj)] = min(ri, rj)
    return np.array([find(i) for i in range(n)], dtype=np.int64)
