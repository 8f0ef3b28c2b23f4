"""``environment.yml`` (conda) and ``pyproject.toml`` (pip, ``make venv``) describe one
environment: every requirement of the package and of its ``notebooks`` and ``test`` extras
appears in both, with the same version bounds, and conda lists nothing pip does not."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement

REPO = Path(__file__).resolve().parents[1]
EXTRAS = ("notebooks", "test")
# conda-forge names that differ from PyPI's.
CONDA_NAME = {"torch": "pytorch"}
# Entries of environment.yml that are not packages of pyproject.toml.
CONDA_ONLY = {"python", "pip"}


def pip_requirements(pyproject: Path) -> dict[str, str]:
    """name -> version specifier of the dependencies and the extras the workbook installs."""
    meta = tomllib.loads(pyproject.read_text())["project"]
    reqs = list(meta["dependencies"])
    for extra in EXTRAS:
        reqs += meta["optional-dependencies"][extra]
    out = {}
    for text in reqs:
        r = Requirement(text)
        out[CONDA_NAME.get(r.name.lower(), r.name.lower())] = str(r.specifier)
    return out


def conda_requirements(env_file: Path) -> dict[str, str]:
    """name -> version specifier of environment.yml (conda and pip sections; '-e .' skipped)."""
    deps = yaml.safe_load(env_file.read_text())["dependencies"]
    entries = []
    for dep in deps:
        if isinstance(dep, dict):
            entries += [p for p in dep.get("pip", []) if not p.startswith("-e")]
        else:
            entries.append(dep)
    out = {}
    for text in entries:
        name = text.split("=")[0].split(">")[0].split("<")[0].strip().lower()
        spec = text[len(name):].strip()
        out[name] = str(Requirement("x" + spec.replace("==", "=").replace("=", "==")
                                    .replace(">==", ">=").replace("<==", "<=")).specifier)
    return out


def drift(pyproject: Path, env_file: Path) -> list[str]:
    pip, conda = pip_requirements(pyproject), conda_requirements(env_file)
    problems = [f"{n}: in pyproject.toml ({s or 'any'}), missing from {env_file.name}"
                for n, s in pip.items() if n not in conda]
    problems += [f"{n}: {env_file.name} says {conda[n] or 'any'}, pyproject.toml {s or 'any'}"
                 for n, s in pip.items() if n in conda and conda[n] != s]
    problems += [f"{n}: in {env_file.name}, not in pyproject.toml"
                 for n in conda if n not in pip and n not in CONDA_ONLY]
    return problems


def test_environment_yml_matches_pyproject():
    problems = drift(REPO / "pyproject.toml", REPO / "environment.yml")
    assert not problems, "environment.yml has drifted:\n  " + "\n  ".join(problems)


@pytest.mark.parametrize("edit, expected", [
    (lambda t: t.replace("  - scipy>=1.11\n", ""), "scipy: in pyproject.toml"),
    (lambda t: t.replace("numpy>=1.24", "numpy>=1.20"), "numpy: environment.yml says >=1.20"),
    (lambda t: t + "  - requests\n", "requests: in environment.yml, not in pyproject.toml"),
])
def test_an_edited_environment_yml_is_caught(tmp_path, edit, expected):
    text = (REPO / "environment.yml").read_text()
    edited = tmp_path / "environment.yml"
    edited.write_text(edit(text))
    assert edit(text) != text
    assert any(p.startswith(expected) for p in drift(REPO / "pyproject.toml", edited))
