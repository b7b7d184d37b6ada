"""Forked span workers: order of results, errors from any process, a worker that dies, no leftovers."""

import gc
import os
import signal
import time

import numpy as np
import pytest
from crypto_helpers import KEK, flip, layout, make_records, write_container

from cryptomed.crypto import RecordAuthenticationError, decrypt_to_arrays
from cryptomed.crypto import container as container_mod
from cryptomed.crypto.parallel import SPANS_PER_WORKER, run_spans

PARENT = os.getpid()
STEP = 50
N = 2 * SPANS_PER_WORKER * STEP  # 2 workers: spans of STEP records


def _span_owner(job, start, stop):
    if os.getpid() == PARENT:
        if start == 0:
            time.sleep(0.3)  # the child claims the next spans meanwhile
    else:  # a child's span takes a while too, so even a parent descheduled after the fork gets spans of its own
        time.sleep(0.05)
    return start, stop, os.getpid()


def test_spans_cover_the_range_in_order_and_use_both_processes():
    parts = run_spans(_span_owner, None, N, 2, "test")
    assert [p[:2] for p in parts] == [(s, s + STEP) for s in range(0, N, STEP)]
    pids = {p[2] for p in parts}
    assert PARENT in pids and len(pids) == 2
    assert gc.get_freeze_count() == 0


def test_one_worker_or_too_little_work_runs_in_the_caller():
    assert run_spans(_span_owner, None, 10, 1, "test") == [(0, 10, PARENT)]
    assert run_spans(_span_owner, None, 10, 4, "test", min_per_worker=256) == [(0, 10, PARENT)]
    assert run_spans(_span_owner, None, 0, 4, "test") == []


def _fail_at(job, start, stop):
    if os.getpid() == PARENT and start == 0:
        time.sleep(0.3)
    if start in job:
        raise job[start]
    return start


def test_the_error_of_the_lowest_failing_span_is_raised_with_its_type_and_message():
    errors = {4 * STEP: ValueError("fourth span"), 2 * STEP: KeyError("second span")}
    with pytest.raises(KeyError, match="second span"):
        run_spans(_fail_at, errors, N, 2, "test")
    assert not _has_children()  # every child was reaped


class _Unpicklable(Exception):
    def __reduce__(self):
        raise TypeError("cannot pickle")


def test_an_unpicklable_error_in_a_child_still_reaches_the_caller_as_text():
    with pytest.raises(Exception, match="_Unpicklable: odd"):
        run_spans(_fail_at, {s: _Unpicklable("odd") for s in range(STEP, N, STEP)}, N, 2, "test")


def _die_in_child(job, start, stop):
    if os.getpid() != PARENT:
        os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(0.05)
    return start


def test_a_worker_that_dies_is_reported_not_hidden():
    with pytest.raises(RuntimeError, match="killed by signal 9"):
        run_spans(_die_in_child, None, N, 2, "test")
    assert not _has_children()


def _has_children():
    try:
        return os.waitpid(-1, os.WNOHANG) is not None
    except ChildProcessError:
        return False


def test_tampered_records_in_parallel_decryption_name_the_first_bad_record(tmp_path, monkeypatch):
    monkeypatch.setattr(container_mod, "MIN_RECORDS_PER_WORKER", 1)
    path = write_container(tmp_path / "d.cmed", records=make_records(n=40), workers=2)
    arrays, _ = decrypt_to_arrays(path, KEK, workers=2)
    np.testing.assert_array_equal(arrays["images"], make_records(n=40)[0])
    for record in (33, 17):
        flip(path, layout(path)[2][record]["ciphertext"])
    with pytest.raises(RecordAuthenticationError, match=r"record 17 .*id 000017.*does not verify"):
        decrypt_to_arrays(path, KEK, workers=2)


def test_short_writes_are_finished_not_lost(tmp_path, monkeypatch):
    """pwritev may write less than asked (a signal, a full disk); the rest is written, not dropped."""
    real = os.pwritev
    monkeypatch.setattr(os, "pwritev", lambda fd, parts, offset: real(fd, [b"".join(parts)[:100]], offset))
    records = make_records(n=12, shape=(16, 16))
    path = write_container(tmp_path / "d.cmed", records=records)
    arrays, _ = decrypt_to_arrays(path, KEK)
    np.testing.assert_array_equal(arrays["images"], records[0])


@pytest.mark.parametrize("chunk", [1, 700, 2500])  # one record per system call, and a few
@pytest.mark.parametrize("workers", [1, 2])
def test_records_cross_io_chunk_boundaries_intact(tmp_path, monkeypatch, chunk, workers):
    monkeypatch.setattr(container_mod, "MIN_RECORDS_PER_WORKER", 1)
    monkeypatch.setattr(container_mod, "IO_CHUNK_BYTES", chunk)
    records = make_records(n=37, shape=(16, 16))
    path = write_container(tmp_path / "d.cmed", records=records, workers=workers)
    monkeypatch.setattr(container_mod, "IO_CHUNK_BYTES", 4 << 20)
    reference = write_container(tmp_path / "r.cmed", records=records)
    arrays, _ = decrypt_to_arrays(reference, KEK)
    np.testing.assert_array_equal(arrays["images"], records[0])
    monkeypatch.setattr(container_mod, "IO_CHUNK_BYTES", chunk)
    for container in (path, reference):
        arrays, _ = decrypt_to_arrays(container, KEK, workers=workers, splits=("train", "test"))
        keep = np.isin(records[3], ["train", "test"])
        np.testing.assert_array_equal(arrays["images"], records[0][keep])
        assert list(arrays["ids"]) == list(records[2][keep])


def test_crypto_benchmark_runs_and_prints_every_row():
    """benchmarks/crypto.py at toy sizes: every section prints its rows (the numbers are for real runs)."""
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "crypto.py"
    out = subprocess.run([sys.executable, str(script), "--images", "300", "--repeats", "1", "--pairs", "2"],
                         capture_output=True, text=True, timeout=300, check=True).stdout
    per_image = [l.split() for l in out.splitlines() if l.split()[1:2] in (["128x128"], ["224x224"])]
    assert len(per_image) == 4 and all(len(row) == 7 for row in per_image)
    assert "openssl speed -evp aes-256-gcm =" in out and out.count("openssl speed / this") == 2
    rows = [l for l in out.splitlines() if " x 64x64" in l or " x 128x128" in l]
    assert len(rows) == 4 and all(l.rstrip().endswith(("yes", "NO")) for l in rows)

