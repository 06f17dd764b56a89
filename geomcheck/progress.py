"""Progress for the long silent steps (capture, dequantization): a live line on a terminal, sparse lines in a log.

A terminal gets one line rewritten in place; anything else (CI logs, pytest's captured output) gets
a line every ``LOG_EVERY_S`` seconds at most, so a log shows the run is alive without a wall of bars.
"""

from __future__ import annotations

import contextlib
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import TextIO

LOG_EVERY_S = 10.0
Opener = Callable[[], contextlib.AbstractContextManager[TextIO]]


def stderr_opener() -> contextlib.AbstractContextManager[TextIO]:
    """The default place progress goes (pytest passes one that suspends its output capture)."""
    return contextlib.nullcontext(sys.stderr)


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


class Progress:
    """Writes ``label: detail`` as work advances; ``finish`` ends the line with the elapsed time."""

    def __init__(self, label: str, opener: Opener = stderr_opener, *, log_every: float = LOG_EVERY_S) -> None:
        self.label = label
        self.opener = opener
        self.log_every = log_every
        self.started = time.perf_counter()
        self._last_log = self.started
        self._lock = threading.Lock()
        self._width = 0
        with opener() as stream:
            self.terminal = _is_terminal(stream)

    def update(self, detail: str) -> None:
        now = time.perf_counter()
        with self._lock, self.opener() as stream:
            text = f"{self.label}: {detail} ({now - self.started:.0f} s)"
            if self.terminal:
                stream.write("\r" + text.ljust(self._width))
                self._width = len(text)
                stream.flush()
            elif now - self._last_log >= self.log_every:
                self._last_log = now
                stream.write(text + "\n")
                stream.flush()

    def finish(self, detail: str = "done") -> None:
        with self._lock, self.opener() as stream:
            text = f"{self.label}: {detail} in {time.perf_counter() - self.started:.1f} s"
            stream.write(("\r" + text.ljust(self._width) if self.terminal else text) + "\n")
            stream.flush()


@contextlib.contextmanager
def heartbeat(label: str, opener: Opener = stderr_opener, *, every: float = LOG_EVERY_S) -> Iterator[Progress]:
    """For a step that reports nothing itself: 'still working' every ``every`` seconds, then the time it took."""
    progress = Progress(label, opener, log_every=every)
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(every if not progress.terminal else 1.0):
            progress.update("working")

    thread = threading.Thread(target=beat, name="geomcheck-heartbeat", daemon=True)
    thread.start()
    try:
        yield progress
    finally:
        stop.set()
        thread.join()
    progress.finish()


@contextlib.contextmanager
def block_progress(blocks: list, n_batches: int, progress: Progress) -> Iterator[None]:
    """Count forward calls of the model's blocks (torch modules) and report 'batch b/B, block i/N' as they run."""
    total = max(1, len(blocks) * n_batches)
    calls = [0]

    def hook(module, args, output) -> None:
        calls[0] = min(calls[0] + 1, total)
        batch, block = divmod(calls[0] - 1, max(1, len(blocks)))
        progress.update(f"batch {batch + 1}/{n_batches}, block {block + 1}/{len(blocks)}")

    handles = [block.register_forward_hook(hook) for block in blocks]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()
