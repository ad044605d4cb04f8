"""Numpy work on helper threads, in bounded memory.

Large numpy operations release the GIL, so a report's per-device arithmetic (cumulative sums,
searches, reductions over millions of samples) runs on two cores at once from threads. The
helpers here only ever get numpy arrays (pandas frames are read by the calling thread: pandas
does not promise thread-safe reads), and :func:`bounded_map` keeps at most ``ahead`` items in
flight, so memory stays a few columns, not every column at once.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from typing import TypeVar

T_ = TypeVar("T_")
R_ = TypeVar("R_")


@contextmanager
def helpers(workers: int = 2) -> Iterator[ThreadPoolExecutor | None]:
    """A pool of ``workers`` threads, or None on a one-core machine (everything runs in the caller)."""
    if (os.cpu_count() or 1) < 2 or workers < 1:
        yield None
        return
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="wattprof-numpy") as pool:
        yield pool


def submit(pool: ThreadPoolExecutor | None, fn: Callable[..., R_], *args: object) -> Future[R_]:
    """``fn(*args)`` on ``pool``, or here and now without one (its exception raised at once)."""
    if pool is not None:
        return pool.submit(fn, *args)
    done: Future[R_] = Future()
    done.set_result(fn(*args))
    return done


def bounded_map(pool: ThreadPoolExecutor | None, fn: Callable[[T_], R_], items: Iterable[T_],
                ahead: int = 2) -> Iterator[R_]:
    """``fn(item)`` for each item, in order, at most ``ahead`` at a time on ``pool``; ``items`` is
    consumed by the caller's thread as results are taken (a generator of large arrays is never
    drained up front)."""
    if pool is None:
        yield from map(fn, items)
        return
    pending: deque[Future[R_]] = deque()
    for item in items:
        pending.append(pool.submit(fn, item))
        while len(pending) >= ahead:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()
