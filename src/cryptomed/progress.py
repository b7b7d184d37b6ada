"""Progress of long loops as log lines with a text bar (readable in Snakemake's log files, unlike ``\\r`` bars)."""

from __future__ import annotations

import logging
import time
from typing import Iterable, Iterator, TypeVar

T = TypeVar("T")
log = logging.getLogger("cryptomed")


def bar(done: int, total: int, width: int = 20) -> str:
    filled = width if total <= 0 else min(width, round(width * done / total))
    return "[" + "#" * filled + "." * (width - filled) + "]"


class Progress:
    """Call :meth:`advance` as work completes; logs at every ``step`` fraction of ``total`` and at the end."""

    def __init__(self, total: int, label: str, step: float = 0.1, unit: str = "images"):
        self.total, self.label, self.unit = int(total), label, unit
        self.every = max(1, int(self.total * step))
        self.done = 0
        self._next = self.every
        self._t0 = time.perf_counter()

    def advance(self, n: int = 1) -> None:
        self.done += n
        if self.done >= self._next or self.done >= self.total:
            while self._next <= self.done:
                self._next += self.every
            elapsed = time.perf_counter() - self._t0
            rate = self.done / elapsed if elapsed > 0 else float("inf")
            eta = (self.total - self.done) / rate if rate and self.done < self.total else 0.0
            log.info("%s %s %3.0f%% %d/%d %s, %.0f/s, %s %.0f s", self.label, bar(self.done, self.total),
                     100 * self.done / max(1, self.total), self.done, self.total, self.unit, rate,
                     "eta" if self.done < self.total else "took", eta if self.done < self.total else elapsed)


def progress(items: Iterable[T], total: int, label: str, **kwargs) -> Iterator[T]:
    """Yield ``items`` and log progress, one item = one unit."""
    p = Progress(total, label, **kwargs)
    for item in items:
        yield item
        p.advance()
