"""pyproject.toml and environment.yml declare the same dependencies."""

from __future__ import annotations

import tomllib

import yaml

from sclib.paths import project_root


def _pip_requirements_of_environment() -> set[str]:
    environment = yaml.safe_load((project_root() / "environment.yml").read_text())
    for entry in environment["dependencies"]:
        if isinstance(entry, dict) and "pip" in entry:
            return {line for line in entry["pip"] if not line.startswith("-e")}
    raise AssertionError("environment.yml is missing its pip: section of dependencies")


def test_environment_matches_pyproject():
    project = tomllib.loads((project_root() / "pyproject.toml").read_text())["project"]
    declared = set(project["dependencies"]) | set(project["optional-dependencies"]["test"])
    listed = _pip_requirements_of_environment()
    assert listed - declared == set(), "in environment.yml only"
    assert declared - listed == set(), "in pyproject.toml only"
