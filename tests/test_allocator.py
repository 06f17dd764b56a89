"""The command pins glibc's malloc thresholds for its own process, and can be told not to."""

from __future__ import annotations

import subprocess
import sys

import pytest

from geomcheck.capture import allocator

PROBE = """
import ctypes, sys
from geomcheck.capture import allocator
print(allocator.pin_malloc_thresholds())
"""


def _run(env_extra: dict[str, str]) -> str:
    import os

    env = {**os.environ, **env_extra}
    return subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, env=env, check=True).stdout.strip()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc only")
def test_thresholds_are_pinned_on_glibc_and_left_alone_when_asked():
    assert _run({"GEOMCHECK_MALLOC": ""}) == "True"
    assert _run({"GEOMCHECK_MALLOC": "default"}) == "False"


def test_settings_stay_within_glibc_limits():
    # glibc refuses an mmap threshold above HEAP_MAX_SIZE / 2 (32 MiB on 64-bit) and ints beyond 2**31.
    values = dict(allocator.SETTINGS)
    assert values[allocator.M_MMAP_THRESHOLD] <= 32 << 20
    assert all(0 < value < 2**31 for value in values.values())
