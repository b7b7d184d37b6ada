"""Run ``fn(job, start, stop)`` over spans of records in forked processes, the calling process being one of them.

Neither PyCryptodome nor OpenSSL-through-``cryptography`` releases the GIL around an
AES-GCM call, and the per-record work around the call is Python, so threads do not
scale; processes do.  Compared with ``multiprocessing.Pool`` this saves what matters
when a whole container takes a few hundred milliseconds: the caller works instead of
waiting (``workers - 1`` forks, no pool threads, no semaphores), spans are claimed one
at a time from a pipe of tokens (a process on a slower core takes fewer), and each
child sends its results once, through a pipe, when it is done.

Errors keep their type and message: the error of the lowest failing span is raised
in the caller (so the record named is the first bad one, as with one process), and a
child that dies without reporting is a ``RuntimeError`` naming its exit status.
"""

from __future__ import annotations

import gc
import mmap
import os
import pickle
import signal
import struct
from typing import Callable

import numpy as np

from ..progress import Progress

SPANS_PER_WORKER = 16  # claimed one at a time: a process on a slower core takes fewer
MAX_WORKERS = 256  # 16 * 256 four-byte tokens fit in a pipe's buffer (64 KiB)


def run_spans(fn: Callable, job, n: int, workers: int, label: str, min_per_worker: int = 1) -> list:
    """Results of ``fn(job, start, stop)`` for contiguous spans covering ``range(n)``, in span order."""
    workers = max(1, min(int(workers), n // max(1, min_per_worker), MAX_WORKERS))
    if workers == 1:
        return [fn(job, 0, n)] if n else []
    bounds = np.linspace(0, n, SPANS_PER_WORKER * workers + 1).astype(int).tolist()
    spans = list(zip(bounds[:-1], bounds[1:]))
    # The spans to do are tokens in a pipe, all written before any process reads: a process claims the next
    # span by reading one token (pipe reads are atomic), and the end of the pipe means nothing is left.
    tokens_r, tokens_w = os.pipe()
    os.write(tokens_w, struct.pack(f"<{len(spans)}I", *range(len(spans))))
    os.close(tokens_w)
    # Shared, not copied on fork: a stop flag (a span failed) and each process's count of records done.
    board = mmap.mmap(-1, 8 * (workers + 1))

    def claim() -> int | None:
        if board[0]:
            return None
        token = os.read(tokens_r, 4)
        return struct.unpack("<I", token)[0] if len(token) == 4 else None

    def work(slot: int, on_span=None) -> tuple[dict, tuple[int, BaseException] | None]:
        done, count = {}, 0
        while (i := claim()) is not None:
            try:
                done[i] = fn(job, *spans[i])
            except BaseException as exc:  # noqa: BLE001 - handed to the caller, which re-raises it
                board[0] = 1
                return done, (i, exc)
            count += spans[i][1] - spans[i][0]
            struct.pack_into("<q", board, 8 * slot, count)
            if on_span:
                on_span(sum(struct.unpack_from(f"<{workers}q", board, 8)))
        return done, None

    # Objects that exist now are shared copy-on-write with the children; keep the cyclic
    # garbage collector from writing to (and so copying) every one of them in every child.
    gc.freeze()
    children = []
    try:
        for slot in range(2, workers + 1):
            read_fd, write_fd = os.pipe()
            pid = os.fork()
            if pid == 0:  # child: never returns
                os.close(read_fd)
                _child(lambda: work(slot), write_fd)
            os.close(write_fd)
            children.append((pid, read_fd))
        progress = Progress(n, f"{label} ({workers} processes)", step=0.25, unit="records")
        results, failure = work(1, on_span=lambda total: progress.advance(total - progress.done))
        failures = [failure] if failure else []
        while children:
            part, child_failure = _collect(*children.pop(0))
            results.update(part)
            failures += [child_failure] if child_failure else []
    finally:
        for pid, read_fd in children:  # left only when the caller was interrupted or a child died
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            os.close(read_fd)
        os.close(tokens_r)
        board.close()
        gc.unfreeze()
    if failures:
        raise min(failures, key=lambda f: f[0])[1]
    if len(results) != len(spans):
        raise RuntimeError(f"{label}: {len(spans) - len(results)} of {len(spans)} spans were not processed")
    if progress.done < n:
        progress.advance(n - progress.done)
    return [results[i] for i in range(len(spans))]


def _child(work: Callable, write_fd: int) -> None:
    status = 0
    try:
        results, failure = work()
        if failure:
            try:
                pickle.dumps(failure[1])
            except Exception:  # noqa: BLE001 - an unpicklable error still reaches the caller as text
                failure = (failure[0], RuntimeError(f"{type(failure[1]).__name__}: {failure[1]}"))
        payload = pickle.dumps((results, failure), protocol=pickle.HIGHEST_PROTOCOL)
        view = memoryview(payload)
        while view:
            view = view[os.write(write_fd, view):]
        os.close(write_fd)  # the caller reads to the end: let it go on before this process is torn down
    except BaseException:  # noqa: BLE001 - the caller sees the exit status
        status = 1
    finally:
        os._exit(status)  # no atexit handlers, no flushing of the parent's buffers


def _collect(pid: int, read_fd: int):
    chunks = []
    with os.fdopen(read_fd, "rb") as fh:
        while chunk := fh.read(1 << 20):
            chunks.append(chunk)
    _, status = os.waitpid(pid, 0)
    if not chunks:
        code = os.waitstatus_to_exitcode(status)
        how = f"was killed by signal {-code}" if code < 0 else f"exited with status {code}"
        raise RuntimeError(f"worker process {pid} {how} without reporting its results")
    return pickle.loads(b"".join(chunks))
