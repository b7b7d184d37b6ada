import csv
import hashlib
import http.server
import io
import shutil
import tarfile
import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest

from conftest import png_bytes, random_image
from cryptomed import download
from cryptomed.datasets import get_dataset
from cryptomed.download import ChecksumError, SourceError, fetch_from_mirror

SPEC = get_dataset("chest_xray")


def make_mirror(root: Path, n=3, sums=True):
    rng = np.random.default_rng(0)
    d = root / SPEC.mirror_dir
    d.mkdir(parents=True)
    rows = []
    with tarfile.open(d / SPEC.mirror_tar, "w") as tf:
        for split in ("train", "test"):
            for cls in SPEC.classes:
                for i in range(n):
                    data = png_bytes(random_image(rng))
                    name = f"x/{split}/{cls}/{i}.png"
                    info = tarfile.TarInfo(name)
                    info.size = len(data)
                    tf.addfile(info, io.BytesIO(data))
                    rows.append([name, split, cls, SPEC.classes.index(cls), hashlib.sha256(data).hexdigest()])
    with open(d / "manifest.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "split", "class_name", "label", "sha256", "duplicate_of"])
        w.writerows(r + [""] for r in rows)
    if sums:
        lines = [f"{hashlib.sha256((d / f).read_bytes()).hexdigest()}  {SPEC.mirror_dir}/{f}"
                 for f in (SPEC.mirror_tar, "manifest.csv")]
        (root / "SHA256SUMS").write_text("\n".join(lines) + "\n")
    return d


def test_mirror_is_verified_and_copied(tmp_path):
    make_mirror(tmp_path / "m")
    report = fetch_from_mirror(SPEC, tmp_path / "m", tmp_path / "out")
    assert report["members_verified"] == 12
    assert all(v["listed_in_SHA256SUMS"] for v in report["files"].values())
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["download.json", "images.tar", "manifest.csv"]


def test_tampered_member_is_named_and_nothing_is_written(tmp_path):
    d = make_mirror(tmp_path / "m", sums=False)
    rows = list(csv.reader(open(d / "manifest.csv")))
    rows[3][4] = "0" * 64
    with open(d / "manifest.csv", "w", newline="") as fh:
        csv.writer(fh).writerows(rows)
    with pytest.raises(ChecksumError, match=rows[3][0]):
        fetch_from_mirror(SPEC, tmp_path / "m", tmp_path / "out")
    assert not any(p.name[0] != "." for p in (tmp_path / "out").iterdir())
    assert list((tmp_path / "out").iterdir()) == []


def test_sha256sums_mismatch_names_the_file(tmp_path):
    d = make_mirror(tmp_path / "m")
    with open(d / SPEC.mirror_tar, "ab") as fh:
        fh.write(b"\0" * 512)
    with pytest.raises(ChecksumError, match=SPEC.mirror_tar):
        fetch_from_mirror(SPEC, tmp_path / "m", tmp_path / "out")


def test_missing_mirror_is_a_clear_error(tmp_path):
    with pytest.raises(SourceError, match="mirror file not found"):
        fetch_from_mirror(SPEC, tmp_path / "nowhere", tmp_path / "out")


def test_real_mirror_verifies(shared_data, tmp_path):
    report = fetch_from_mirror(get_dataset("chest_xray"), shared_data, tmp_path / "out")
    assert report["members_verified"] == 5840


# ----------------------------------------------------------------- upstream, served from loopback


@pytest.fixture
def server(tmp_path):
    root = tmp_path / "www"
    root.mkdir()

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a, **kw):
            super().__init__(*a, directory=str(root), **kw)

        def log_message(self, *a):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    t = threading.Thread(target=httpd.serve_forever, daemon=True)
    t.start()
    yield root, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def kaggle_like_zip(path: Path):
    rng = np.random.default_rng(5)
    with zipfile.ZipFile(path, "w") as zf:
        for prefix in ("chest_xray/", "chest_xray/chest_xray/"):  # Kaggle's zip holds the set twice
            for split in ("train", "val", "test"):
                for cls in SPEC.classes:
                    zf.writestr(f"{prefix}{split}/{cls}/img_{split}.jpeg", png_bytes(np.full((4, 4), len(split), np.uint8)))
        zf.writestr("chest_xray/__MACOSX/._junk.jpeg", b"junk")
        zf.writestr("chest_xray/train/.DS_Store", b"junk")


def test_kaggle_source_repacks_and_records_hashes(server, tmp_path, monkeypatch):
    root, base = server
    target = root / "datasets" / "download" / "paultimothymooney"
    target.mkdir(parents=True)
    kaggle_like_zip(target / "chest-xray-pneumonia")
    monkeypatch.setattr(download, "KAGGLE_API", base)
    monkeypatch.setenv("KAGGLE_USERNAME", "u")
    monkeypatch.setenv("KAGGLE_KEY", "k")
    report = download.fetch(SPEC, tmp_path / "out", mirror=None, source="kaggle")
    # the doubled folder is deduplicated, val is folded into train, junk is ignored
    assert report["members"] == 6
    rows = list(csv.DictReader(open(tmp_path / "out" / "manifest.csv")))
    assert sorted(r["split"] for r in rows) == ["test"] * 2 + ["train"] * 4
    assert all(len(r["sha256"]) == 64 for r in rows)


def test_kaggle_without_credentials_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.delenv("KAGGLE_USERNAME", raising=False)
    monkeypatch.delenv("KAGGLE_KEY", raising=False)
    monkeypatch.setenv("KAGGLE_CONFIG_DIR", str(tmp_path))
    with pytest.raises(SourceError, match="DATA_MIRROR"):
        download.fetch(SPEC, tmp_path / "out", source="kaggle")


def test_zenodo_md5_mismatch_is_rejected(server, tmp_path, monkeypatch):
    root, base = server
    buf = io.BytesIO()
    np.savez(buf, **{f"{s}_images": np.zeros((2, 4, 4), np.uint8) for s in ("train", "val", "test")},
             **{f"{s}_labels": np.array([[0], [1]], np.uint8) for s in ("train", "val", "test")})
    (root / "p.npz").write_bytes(buf.getvalue())
    up = download.UpstreamSource(kind="zenodo", identifier=f"{base}/p.npz", md5="0" * 32)
    spec = SPEC.__class__(**{**SPEC.__dict__, "upstream": {"z": up}})
    with pytest.raises(ChecksumError, match="MD5"):
        download.fetch(spec, tmp_path / "out", source="z")
    up_ok = download.UpstreamSource(kind="zenodo", identifier=f"{base}/p.npz",
                                    md5=hashlib.md5(buf.getvalue()).hexdigest())
    spec_ok = SPEC.__class__(**{**SPEC.__dict__, "upstream": {"z": up_ok}})
    report = download.fetch(spec_ok, tmp_path / "out2", source="z")
    assert report["members"] == 6


def test_unreachable_source_is_a_clear_error(tmp_path):
    with pytest.raises(SourceError, match="failed"):
        download.http_download("http://127.0.0.1:9/nothing", tmp_path / "x", timeout=2)
