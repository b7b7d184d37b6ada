"""Run ``fn(job, start, stop)`` over spans of records in forked processes, the calling process being one of them.

Neither PyCryptodome nor OpenSSL-through-``cryptography`` releases the GIL around an
AES-GCM call, and the per-record work around the call is Python, so threads do not
scale; processes do.  Compared with ``multiprocessing.Pool`` this saves what matters
when a whole container takes a few hundred milliseconds: the caller works instead of
waiting (``workers - 1`` forks, no pool threads, no task queue), spans are claimed from
a counter in shared memory (a slow core does not hold up the rest), and each child
sends its results once, through a pipe, when it is done.

Errors keep their type and message: the error of the lowest failing span is raised
in the caller (so the record named is the first bad one, as with one process), and a
child that dies without reporting is a ``RuntimeError`` naming its exit status.
"""

from __future__ import annotations

import gc
import multiprocessing
import os
import pickle
import signal
from typing import Callable

import numpy as np

from ..progress import Progress

SPANS_PER_WORKER = 16  # claimed one at a time: a process on a slower core takes fewer


def run_spans(fn: Callable, job, n: int, workers: int, label: str, min_per_worker: int = 1) -> list:
    """Results of ``fn(job, start, stop)`` for contiguous spans covering ``range(n)``, in span order."""
    workers = max(1, min(int(workers), n // max(1, min_per_worker)))
    if workers == 1:
        return [fn(job, 0, n)] if n else []
    bounds = np.linspace(0, n, SPANS_PER_WORKER * workers + 1).astype(int).tolist()
    spans = list(zip(bounds[:-1], bounds[1:]))
    ctx = multiprocessing.get_context("fork")
    lock = ctx.Lock()
    shared = ctx.RawArray("q", 3)  # next span to claim, records done, stop flag

    def claim() -> int | None:
        with lock:
            i = shared[0]
            if shared[2] or i >= len(spans):
                return None
            shared[0] = i + 1
            return i

    def work(on_span=None) -> tuple[dict, tuple[int, BaseException] | None]:
        done = {}
        while (i := claim()) is not None:
            try:
                done[i] = fn(job, *spans[i])
            except BaseException as exc:  # noqa: BLE001 - handed to the caller, which re-raises it
                with lock:
                    shared[2] = 1
                return done, (i, exc)
            with lock:
                shared[1] += spans[i][1] - spans[i][0]
                total_done = shared[1]
            if on_span:
                on_span(total_done)
        return done, None

    # Objects that exist now are shared copy-on-write with the children; keep the cyclic
    # garbage collector from writing to (and so copying) every one of them in every child.
    gc.freeze()
    children = []
    try:
        for _ in range(workers - 1):
            read_fd, write_fd = os.pipe()
            pid = os.fork()
            if pid == 0:  # child: never returns
                os.close(read_fd)
                _child(work, write_fd)
            os.close(write_fd)
            children.append((pid, read_fd))
        progress = Progress(n, f"{label} ({workers} processes)", step=0.25, unit="records")
        results, failure = work(on_span=lambda total: progress.advance(total - progress.done))
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
        gc.unfreeze()
    if failures:
        raise min(failures, key=lambda f: f[0])[1]
    if len(results) != len(spans):
        raise RuntimeError(f"{label}: {len(spans) - len(results)} of {len(spans)} spans were not processed")
    if progress.done < n:
        progress.advance(n - progress.done)
    return [results[i] for i in range(len(spans))]


def _child(work, write_fd: int) -> None:
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
