"""README and examples/ci-gate.yml: the commands a new user copies work as written (issue #15)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
PATH_OPTIONS = ("--geom-model", "--geom-spec", "--geom-report", "--geom-baseline-dir", "--geom-adapters", "--model", "--spec",
                "--report", "--baseline-dir", "--adapters", "--cache")


def _commands() -> list[str]:
    blocks = re.findall(r"```bash\n(.*?)```", README, re.S)
    return [line.split("#")[0].strip() for block in blocks for line in block.splitlines() if line.strip()]


def test_path_valued_options_are_written_one_way():
    spaced = [(command, option) for command in _commands() for option in PATH_OPTIONS
              if re.search(rf"(^|\s){re.escape(option)}\s+[^-\s]", command)]
    assert spaced == []


def test_readme_gives_run_times_and_how_the_browser_tests_get_chromium():
    assert re.search(r"\b60 s\b", README) and "25 s" in README
    assert "Chromium" in README and "apt-get install -y chromium" in README and ".ci/run" in README
    assert "apt-get install -y" in (ROOT / ".ci" / "run").read_text(encoding="utf-8")


def test_ci_example_installs_geomcheck_from_its_repository():
    text = (ROOT / "examples" / "ci-gate.yml").read_text(encoding="utf-8")
    workflow = yaml.safe_load(text)
    runs = [step.get("run", "") for job in workflow["jobs"].values() for step in job["steps"]]
    installs = [line.strip() for run in runs for line in run.splitlines() if "pip install" in line and "torch" not in line and "--upgrade pip" not in line]
    assert installs and all(not re.fullmatch(r"pip install geomcheck\b.*", line) for line in installs), installs
    assert all("git+" in line or "./" in line or " -e " in line for line in installs), installs
    for job in workflow["jobs"].values():
        checkouts = [step for step in job["steps"] if str(step.get("uses", "")).startswith("actions/checkout")]
        assert any(step.get("with", {}).get("path") == ".geomcheck" for step in checkouts)


@pytest.mark.skipif(shutil.which("git") is None or not (ROOT / ".git").exists(), reason="needs a git checkout")
def test_what_the_readme_commands_write_is_ignored_by_git():
    written = [".venv/bin/python", "reports/smollm2-135m-llama.html", "reports/random-smollm2-135m-llama.html",
               "reports/compare-ckpt-old-vs-ckpt-new.html", "reports/browser-check.png", ".hypothesis/examples/x",
               "geomcheck.egg-info/PKG-INFO", "geomcheck/__pycache__/cli.cpython-311.pyc"]
    done = subprocess.run(["git", "check-ignore", "--no-index", *written], cwd=ROOT, capture_output=True, text=True)
    assert sorted(done.stdout.split()) == sorted(written)
