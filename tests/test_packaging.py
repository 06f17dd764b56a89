"""geomcheck in a user's own project: the wheel carries the shipped specs, and its pytest plugin runs there.

The installed test builds the wheel from this checkout, installs it (without dependencies) into a
fresh virtual environment that borrows this one's dependencies, and runs
``pytest --geom-model=smollm2-135m`` in an empty project folder: no ``specs/``, no conftest, no
baselines; the built-in specs must run from the installed copy, not from the checkout.
"""

import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from geomcheck.spec import builtin

ROOT = Path(__file__).resolve().parent.parent
tomllib = pytest.importorskip("tomllib")


def test_the_package_list_names_every_package_and_the_builtin_specs():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    on_disk = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "geomcheck").rglob("__init__.py")}
    data = {".".join(p.relative_to(ROOT).parts) for p in (ROOT / "geomcheck").rglob("*") if p.is_dir() and p.name != "__pycache__"}
    assert on_disk <= listed, sorted(on_disk - listed)  # a package left out would be missing from the wheel
    assert listed - {"geomcheck.builtin_specs"} <= on_disk | data
    assert config["package-dir"]["geomcheck.builtin_specs"] == "specs"


def test_builtin_names_resolve_to_the_shipped_files_and_misspellings_get_a_hint():
    assert set(builtin.names()) == {p.stem for p in (ROOT / "specs").glob("*.yaml")}
    assert builtin.path_for("builtin:decoder").read_text() == (ROOT / "specs" / "decoder.yaml").read_text()
    assert builtin.label(builtin.path_for("builtin:llama")) == "builtin:llama"
    with pytest.raises(builtin.UnknownBuiltinSpec, match="did you mean builtin:decoder"):
        builtin.path_for("builtin:decodr")
    assert builtin.default_paths(ROOT) == ["specs"]
    assert builtin.default_paths(ROOT / "docs") == [str(builtin.folder())]


@pytest.mark.real_model
@pytest.mark.slow
def test_the_wheel_runs_the_builtin_specs_in_a_project_without_specs(tmp_path, smollm2):
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(wheels), str(ROOT)],
                   check=True, capture_output=True, cwd=tmp_path)
    (wheel,) = wheels.glob("geomcheck-*.whl")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               check=True, capture_output=True, text=True).stdout.strip())
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(site), str(wheel)], check=True,
                   capture_output=True)
    # Dependencies (torch, transformers, ...) from this environment, after the wheel's own copy of geomcheck.
    (site / "zz_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    project = tmp_path / "my-project"
    project.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "PYTHONPATH")}
    where = subprocess.run([str(python), "-c", "import geomcheck.spec.builtin as b; print(b.folder())"], cwd=project, env=env,
                           check=True, capture_output=True, text=True).stdout.strip()
    assert Path(where).is_relative_to(site) and not Path(where).is_relative_to(ROOT)
    run = subprocess.run([str(python), "-m", "pytest", "--geom-model=smollm2-135m", "-p", "no:cacheprovider", "-q",
                          "-k", "final_norm_drop or norm_growth", "-W", "error::pytest.PytestUnknownMarkWarning"],
                         cwd=project, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "3 passed" in run.stdout and "ran the built-in specs" in run.stdout
    assert not list(project.rglob("*.lock")) and not (project / "baselines").exists()
