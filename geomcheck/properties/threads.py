"""Measure with one BLAS thread: the properties' linear algebra is many small products and eigenproblems.

Measured on the 2-core CPU machine (docs/performance.md): the separation probe's measurement and
jackknife took 1.8 s and 4.5 s with OpenBLAS's two threads and 1.3 s and 2.9 s with one, and the
position-structure PCAs 3.6 s against 0.5 s. Handing a 576 x 576 eigenproblem or an 8-column Newton
step to a second thread costs more in hand-off than it saves. The limit holds only inside the block,
so a host process (the pytest plugin runs inside the user's) keeps its own setting everywhere else;
torch's thread count is set to one inside the block too (the measurement's torch arithmetic) and
restored after it, so the forward passes keep every core.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from functools import cache
from typing import TypeVar

import torch
from threadpoolctl import ThreadpoolController


@cache
def _controller() -> ThreadpoolController:
    """Finding the loaded BLAS libraries takes about a millisecond; do it once per process."""
    return ThreadpoolController()


@contextmanager
def one_blas_thread() -> Iterator[None]:
    """One BLAS thread, and one torch thread for the measurement's torch arithmetic (geomcheck.properties.spectral):
    the jackknife already runs one replicate per core, and two threads each in two replicates fight for two cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with _controller().limit(limits=1, user_api="blas"):
            yield
    finally:
        torch.set_num_threads(threads)


T = TypeVar("T")
R = TypeVar("R")


def map_on_cores(function: Callable[[T], R], items: Iterable[T]) -> list[R]:
    """``[function(item) for item in items]``, on as many threads as there are cores, in order.

    For independent, pure pieces of a measurement (the jackknife's replicates): their time
    is mostly in BLAS and LAPACK, which release the GIL, so threads run them side by side and share the
    capture without copying it. The results do not depend on the scheduling.
    """
    items = list(items)
    workers = max(1, min(len(items), os.cpu_count() or 1))
    if workers == 1:
        return [function(item) for item in items]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(function, items))
