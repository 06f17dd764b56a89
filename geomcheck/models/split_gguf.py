"""A GGUF shipped on PyPI in several wheels (PyPI caps a file's size): joined once into geomcheck's cache.

Each part is found without importing its package, like the single-file packaged model; the joined
file is checked against a known size and SHA-256 before it is used, so a wrong, partial or
tampered part never reaches the dequantizer.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from geomcheck.errors import ModelLoadError
from geomcheck.models.gguf_cache import cache_root

CHUNK = 1 << 22
SUBDIR = "packaged"


def file_in_package(package: str, relative: str) -> Path | None:
    """A file shipped inside an installed package, found without importing the package (an import may pull
    heavy dependencies, e.g. llama.cpp); None when the package or the file is missing."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / relative
    return path if path.is_file() else None


@dataclass(frozen=True)
class PackagePart:
    """One wheel's share of the file: the package (import name) and the file's path inside it."""

    package: str
    path: str

    def locate(self) -> Path | None:
        return file_in_package(self.package, self.path)


@dataclass(frozen=True)
class SplitGGUF:
    """A GGUF that is the concatenation, in order, of files from several installed packages."""

    parts: tuple[PackagePart, ...]
    filename: str
    size: int
    sha256: str
    install: str

    @property
    def package(self) -> str:
        """The packages not installed (all of them when none is missing), for "not installed" messages."""
        missing = [part.package for part in self.parts if part.locate() is None]
        return ", ".join(missing or [part.package for part in self.parts])

    def installed(self) -> bool:
        return all(part.locate() is not None for part in self.parts)

    def target(self, root: Path | None = None) -> Path:
        return cache_root(root) / SUBDIR / self.sha256[:16] / self.filename

    def locate(self, root: Path | None = None) -> Path | None:
        """The joined file if it was built before (size and stamp checked; no hashing), else None."""
        path = self.target(root)
        stamp = path.with_name(path.name + ".sha256")
        try:
            if path.stat().st_size == self.size and stamp.read_text().strip() == self.sha256:
                return path
        except OSError:
            return None
        return None

    def materialize(self, root: Path | None = None) -> Path | None:
        """The joined file, built on first use from the installed parts; None when a part is not installed."""
        found = self.locate(root)
        if found is not None:
            return found
        paths = [part.locate() for part in self.parts]
        if any(path is None for path in paths):
            return None
        return self._join([p for p in paths if p is not None], self.target(root))

    def _join(self, paths: list[Path], target: Path) -> Path:
        """Concatenate into a temporary sibling while hashing, verify, then rename into place."""
        target.parent.mkdir(parents=True, exist_ok=True)
        print(f"geomcheck: joining {len(paths)} packaged parts into {target} (once)", file=sys.stderr)
        digest, written = hashlib.sha256(), 0
        handle, staging_name = tempfile.mkstemp(prefix=target.name + ".tmp-", dir=target.parent)
        staging = Path(staging_name)
        try:
            with os.fdopen(handle, "wb") as out:
                for path in paths:
                    with open(path, "rb") as source:
                        while block := source.read(CHUNK):
                            digest.update(block)
                            out.write(block)
                            written += len(block)
            if written != self.size or digest.hexdigest() != self.sha256:
                raise ModelLoadError(
                    self.filename,
                    f"the installed parts ({', '.join(p.package for p in self.parts)}) join to {written:,} bytes with "
                    f"SHA-256 {digest.hexdigest()[:16]}…, not the expected {self.size:,} bytes / {self.sha256[:16]}…",
                    f"reinstall the parts at the expected version: {self.install} --force-reinstall",
                )
            os.replace(staging, target)
            target.with_name(target.name + ".sha256").write_text(self.sha256 + "\n")
        finally:
            if staging.exists():
                staging.unlink()
        return target
