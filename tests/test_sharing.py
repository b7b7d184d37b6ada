"""The remote audit finds plaintext image windows and key material, and nothing in clean data."""

import zipfile

import numpy as np

from cryptomed.sharing import ImageIndex, audit_remote, key_forms


def textured(rng, n=6, size=32):
    return rng.integers(0, 256, size=(n, size, size), dtype=np.uint8)


def test_a_64_byte_window_at_any_offset_is_found_and_63_bytes_are_not(tmp_path):
    rng = np.random.default_rng(0)
    images = textured(rng)
    flat = images[3].tobytes()
    for off in (0, 1, 17, 31, 33, 500, len(flat) - 64):
        data = rng.bytes(101) + flat[off : off + 64] + rng.bytes(7)
        leaks = ImageIndex(images).find(data, "obj")
        assert [(lk.offset, lk.length, lk.what) for lk in leaks] == [(101, 64, f"image 3 at byte {off}")], off
        assert ImageIndex(images).find(rng.bytes(101) + flat[off : off + 63] + rng.bytes(7), "obj") == []


def test_flat_background_is_not_reported_but_textured_content_is():
    rng = np.random.default_rng(1)
    images = np.zeros((2, 32, 32), np.uint8)
    images[1, 16:] = rng.integers(0, 256, size=(16, 32))
    index = ImageIndex(images)
    assert index.find(bytes(4096), "zeros") == []  # zero padding matches every file's zero runs: skipped
    leaks = index.find(b"\0" * 10 + images[1].tobytes()[512:640], "obj")
    assert leaks and leaks[0].what.startswith("image 1")


def test_audit_scans_zip_members_and_finds_every_key_spelling(tmp_path):
    rng = np.random.default_rng(2)
    images = textured(rng)
    key = rng.bytes(32)
    remote = tmp_path / "remote"
    (remote / "files/md5/ab").mkdir(parents=True)
    (remote / "files/md5/ab/clean").write_bytes(rng.bytes(50_000))
    with zipfile.ZipFile(remote / "files/md5/ab/model", "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("weights.h5", rng.bytes(1000) + images[4].tobytes())
    found = {lk.object for lk in audit_remote(remote, images)["leaks"]}
    # the member is found decompressed (random bytes may also sit verbatim in deflate's stored blocks)
    assert "files/md5/ab/model!weights.h5" in found and found <= {"files/md5/ab/model!weights.h5", "files/md5/ab/model"}
    for form, spelled in key_forms(key).items():
        (remote / "files/md5/ab/k").write_bytes(rng.bytes(99) + spelled + rng.bytes(5))
        leaks = [lk for lk in audit_remote(remote, images, [key])["leaks"] if "key" in lk.what]
        assert [(lk.object, lk.offset) for lk in leaks] == [("files/md5/ab/k", 99)], form


def test_clean_remote_passes(tmp_path):
    rng = np.random.default_rng(3)
    (tmp_path / "a").write_bytes(rng.bytes(200_000))
    result = audit_remote(tmp_path, textured(rng), [rng.bytes(32)])
    assert result["leaks"] == [] and result["objects"] == 1 and result["image_blocks_indexed"] == 6 * 32


def test_cli_audit_remote_exits_1_on_a_leak_and_0_when_clean(tmp_path, capsys):
    from cryptomed.cli import main
    from cryptomed.crypto import generate_key_file
    from cryptomed.data import save_arrays

    rng = np.random.default_rng(4)
    images = textured(rng)
    save_arrays(tmp_path / "images.npz", {"images": images})
    key_file = tmp_path / "k.key"
    generate_key_file(key_file)
    remote = tmp_path / "remote"
    remote.mkdir()
    (remote / "obj").write_bytes(rng.bytes(5000))
    args = ["audit-remote", str(remote), "--images", str(tmp_path / "images.npz"), "--key-file", str(key_file)]
    assert main(args) == 0 and "no plaintext image window" in capsys.readouterr().out
    (remote / "obj2").write_bytes(images[2].tobytes()[200:300])
    assert main(args) == 1
    assert "LEAK obj2 @ 0: 100 bytes of image 2 at byte 200" in capsys.readouterr().out
