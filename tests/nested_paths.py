"""Addresses into parsed YAML (nested dicts and lists), shared by the spec fuzz test and its long campaign.

A path is the tuple of keys and indices from the root; mutating one place of a valid spec at a time
is how both reach every key with junk.
"""

from __future__ import annotations

import contextlib


def paths(data: object, prefix: tuple = ()) -> list[tuple]:
    """Every place below ``data`` (not the root itself), depth first."""
    found = [prefix] if prefix else []
    if isinstance(data, dict):
        for key, value in data.items():
            found += paths(value, prefix + (key,))
    elif isinstance(data, list):
        for index, value in enumerate(data):
            found += paths(value, prefix + (index,))
    return found


def get(data: object, path: tuple) -> object:
    for part in path:
        data = data[part]  # type: ignore[index]
    return data


def set_at(data: object, path: tuple, value: object) -> None:
    """Put ``value`` at ``path``; a path an earlier mutation removed is left alone."""
    with contextlib.suppress(KeyError, IndexError, TypeError):
        get(data, path[:-1])[path[-1]] = value  # type: ignore[index]
