"""Packaging by the conventions: pyproject.toml declares what sdml imports (core with lower bounds,
the rest in extras), requirements.txt holds the tested set, and ``pip install -e .`` into an
environment that already has another torch keeps that torch."""
from __future__ import annotations

import ast
import base64
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys

import zipfile
from importlib import metadata
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")  # Python 3.11 and later

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
# The layers every command needs; the results and notebook layers may use the extras.
TORCH_BOUND = next(r.split(">=")[1] for r in PYPROJECT["dependencies"] if r.startswith("torch>="))
CORE_PARTS = ("io", "hierarchy", "data", "method", "models", "training")


def _name(requirement: str) -> str:
    """The normalised distribution name of a requirement line (PEP 503)."""
    return re.sub(r"[-_.]+", "-", re.match(r"\s*([A-Za-z0-9_.-]+)", requirement).group(1)).lower()


def _third_party(paths) -> set[str]:
    """The distributions whose modules these files import (absolute imports only)."""
    modules = set()
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                modules |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules.add(node.module.split(".")[0])
    modules -= set(sys.stdlib_module_names) | {"sdml"}
    dists = metadata.packages_distributions()
    return {_name(d) for m in modules for d in dists[m]}


def test_core_dependencies_cover_the_core_layers():
    core = {_name(r) for r in PYPROJECT["dependencies"]}
    files = [p for part in CORE_PARTS for p in (ROOT / "sdml" / part).rglob("*.py")]
    files += [ROOT / "sdml" / "cli.py", ROOT / "sdml" / "__main__.py"]
    assert _third_party(files) <= core


def test_every_import_is_declared_in_core_or_an_extra():
    declared = {_name(r) for r in PYPROJECT["dependencies"]}
    for extra in PYPROJECT["optional-dependencies"].values():
        declared |= {_name(r) for r in extra}
    assert _third_party((ROOT / "sdml").rglob("*.py")) <= declared


def test_declared_packages_have_lower_bounds_only():
    requirements = list(PYPROJECT["dependencies"])
    for extra in PYPROJECT["optional-dependencies"].values():
        requirements += extra
    for r in requirements:
        assert re.fullmatch(r"[A-Za-z0-9_.-]+>=[0-9][0-9.]*", r), r


def test_requirements_txt_is_the_tested_set_of_every_declared_package():
    lines = [ln.split("#")[0].strip() for ln in (ROOT / "requirements.txt").read_text().splitlines()]
    tested = {_name(ln) for ln in lines if ln}
    declared = {_name(r) for r in PYPROJECT["dependencies"]}
    for extra in PYPROJECT["optional-dependencies"].values():
        declared |= {_name(r) for r in extra}
    assert tested == declared
    assert {ln for ln in lines if ln.startswith(("torch==", "torchvision=="))} == {
        f"torch=={metadata.version('torch').split('+')[0]}",
        f"torchvision=={metadata.version('torchvision').split('+')[0]}"}


def test_licence_is_declared_alike_everywhere():
    assert PYPROJECT["license"] == "MIT"
    assert (ROOT / "LICENSE").read_text().startswith("MIT License")
    assert re.search(r"^license: MIT$", (ROOT / "CITATION.cff").read_text(), re.M)


# ----------------------------------------------------------------------------- pip, offline

def _fake_wheel(folder: Path, name: str, version: str) -> None:
    """A tiny pure-Python wheel named ``name`` at ``version``: a stand-in for a real distribution."""
    module = name.replace("-", "_")
    info = f"{module}-{version}.dist-info"
    files = {
        f"{module}/__init__.py": f'__version__ = "{version}"  # a stand-in made by a test\n',
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
        f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: sdml-test\nRoot-Is-Purelib: true\n"
                         "Tag: py3-none-any\n",
    }
    record = []
    for path, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=")
        record.append(f"{path},sha256={digest.decode()},{len(text.encode())}")
    files[f"{info}/RECORD"] = "\n".join(record + [f"{info}/RECORD,,"]) + "\n"
    with zipfile.ZipFile(folder / f"{module}-{version}-py3-none-any.whl", "w") as whl:
        for path, text in files.items():
            whl.writestr(zipfile.ZipInfo(path, date_time=(2020, 1, 1, 0, 0, 0)), text)


def _pip(python: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_") and k != "PYTHONPATH"}
    env |= {"PIP_CONFIG_FILE": os.devnull, "PIP_DISABLE_PIP_VERSION_CHECK": "1",
           "PIP_NO_INPUT": "1"}
    return subprocess.run([sys.executable, "-m", "pip", "--python", str(python), *args],
                          capture_output=True, text=True, env=env, timeout=300)


def _installed(python: Path) -> dict[str, str]:
    listing = _pip(python, "list", "--format", "json")
    assert listing.returncode == 0, listing.stderr
    return {_name(d["name"]): d["version"] for d in json.loads(listing.stdout)}


@pytest.fixture
def user_env(tmp_path):
    """A venv holding stand-ins of every core dependency at its lower bound (not the tested
    torch release), setuptools made importable for an offline build, and a copy of the kit's
    sources; returns (venv python, wheel folder, project copy)."""
    pytest.importorskip("setuptools")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                               capture_output=True, text=True, check=True).stdout.strip())
    # setuptools (for --no-build-isolation) from this interpreter, and nothing else from it
    import setuptools

    tools = tmp_path / "buildtools"
    tools.mkdir()
    source = Path(setuptools.__file__).parents[1]
    for entry in source.iterdir():
        if entry.name in ("setuptools", "_distutils_hack", "pkg_resources") or re.fullmatch(
                r"setuptools-[^/]*\.dist-info", entry.name):
            (tools / entry.name).symlink_to(entry)
    (site / "buildtools.pth").write_text(f"{tools}\n")
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    pins = [re.sub(">=", "==", r) for r in PYPROJECT["dependencies"]]
    for pin in pins:
        _fake_wheel(wheels, *pin.split("=="))
    done = _pip(python, "install", "--no-index", "--find-links", str(wheels), *pins)
    assert done.returncode == 0, done.stderr
    project = tmp_path / "project"
    project.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, project / name)
    shutil.copytree(ROOT / "sdml", project / "sdml", ignore=shutil.ignore_patterns("__pycache__"))
    return python, wheels, project


def test_editable_install_keeps_the_torch_already_there(user_env):
    python, wheels, project = user_env
    before = _installed(python)
    assert before["torch"] == TORCH_BOUND != metadata.version("torch")
    done = _pip(python, "install", "--no-index", "--find-links", str(wheels),
                "--no-build-isolation", "-e", str(project))
    assert done.returncode == 0, done.stderr
    after = _installed(python)
    assert {k: v for k, v in after.items() if k != "sdml"} == before
    assert after["sdml"] == PYPROJECT["version"]
    version = subprocess.run([str(python), "-c", "import torch; print(torch.__version__)"],
                             capture_output=True, text=True, check=True).stdout.strip()
    assert version == TORCH_BOUND


def test_a_torch_below_the_bound_is_not_kept_silently(user_env):
    """The check is not vacuous: with torch older than the bound, pip (offline, so unable to
    fetch another) refuses, naming torch."""
    python, wheels, project = user_env
    old = wheels / "old"
    old.mkdir()
    _fake_wheel(old, "torch", "2.0.0")
    done = _pip(python, "install", "--no-index", "--find-links", str(old), "torch==2.0.0")
    assert done.returncode == 0, done.stderr
    done = _pip(python, "install", "--no-index", "--find-links", str(old),
                "--no-build-isolation", "-e", str(project))
    assert done.returncode != 0
    assert "torch>=2.1" in done.stdout + done.stderr
    assert _installed(python)["torch"] == "2.0.0"
