"""Finding the checkpoints of a training run and their steps: Trainer output folders, globs, or model references."""

from __future__ import annotations

import glob
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from geomcheck.errors import GeomcheckError
from geomcheck.paths import printable
from geomcheck.safe_read import read_capped

CHECKPOINT_GLOB = "checkpoint-*"
TRAINER_STATE = "trainer_state.json"
MAX_TRAINER_STATE_BYTES = 64 << 20  # its log history grows with the run; only global_step is read
_NUMBER = re.compile(r"(\d+)")
_GLOB_CHARS = set("*?[")


class NoCheckpointsError(GeomcheckError, FileNotFoundError):
    """Nothing to measure: an empty folder, a glob that matched nothing."""

    def __init__(self, where: str, reason: str) -> None:
        self.where, self.reason = where, reason
        super().__init__(f"{where}: {reason}")


@dataclass(frozen=True)
class Checkpoint:
    """A model reference with its training step; ``label`` names it in the table and the report."""

    reference: str
    step: int | None
    label: str
    order: int


def discover(sources: Sequence[str]) -> list[Checkpoint]:
    """Every checkpoint that ``sources`` name, ordered by step (those without one keep their given order, after the rest).

    A source is a Trainer output folder (its ``checkpoint-*`` folders), one checkpoint folder, a glob,
    or any model reference (alias, hub id, ``.gguf``, ``random:...``). Raises NoCheckpointsError when a
    folder or glob holds nothing to measure.
    """
    found: list[str] = []
    for source in sources:
        found.extend(_expand(source))
    unique = list(dict.fromkeys(found))
    checkpoints = [Checkpoint(ref, _step(ref), _label(ref), index) for index, ref in enumerate(unique)]
    checkpoints.sort(key=lambda c: (c.step is None, c.step if c.step is not None else 0, c.order))
    return checkpoints


def _expand(source: str) -> list[str]:
    path = Path(source).expanduser()
    if _GLOB_CHARS & set(source):
        matches = sorted(glob.glob(str(path)))
        if not matches:
            raise NoCheckpointsError(source, "the pattern matches nothing")
        return [m for m in matches if Path(m).is_dir() or m.endswith(".gguf")]
    if not path.is_dir():
        return [source]  # a model reference; resolving it is the loader's job, and its errors name it
    inner = sorted((p for p in path.glob(CHECKPOINT_GLOB) if p.is_dir()), key=lambda p: p.name)
    if inner:
        return [str(p) for p in inner]
    if (path / "config.json").is_file():
        return [str(path)]
    models = sorted(p for p in path.iterdir() if p.is_dir() and (p / "config.json").is_file())
    if models:
        return [str(p) for p in models]
    raise NoCheckpointsError(source, "no checkpoint-* folders and no model folders (config.json) in it")


def _step(reference: str) -> int | None:
    """``global_step`` from trainer_state.json, else the last number in the folder name (``checkpoint-500``)."""
    path = Path(reference).expanduser()
    state = path / TRAINER_STATE
    if state.is_file():
        try:
            step = json.loads(read_capped(state, MAX_TRAINER_STATE_BYTES, TRAINER_STATE).decode("utf-8")).get("global_step")
        except (OSError, ValueError, AttributeError, RecursionError):  # unreadable, huge or nested without end: the folder name decides
            step = None
        if isinstance(step, int) and not isinstance(step, bool):
            return step
    if path.exists():
        numbers = _NUMBER.findall(path.name)
        return int(numbers[-1]) if numbers else None
    return None


def _label(reference: str) -> str:
    """The folder name (or reference) as the table and the report show it; control and bidi characters
    escaped, so a folder named with a newline cannot forge a line of the table."""
    path = Path(reference).expanduser()
    return printable(path.name if path.exists() else reference)
