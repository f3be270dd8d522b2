"""The environment matches requirements.lock (scripts/setup.sh installs with it as constraints)."""

from __future__ import annotations

import re
from importlib import metadata

from benchmark.registry import REPO


def locked() -> dict[str, str]:
    pins = {}
    for line in (REPO / "requirements.lock").read_text(encoding="utf-8").splitlines():
        if line and not line.startswith("#"):
            name, version = line.split("==")
            pins[name] = version
    return pins


def test_installed_versions_match_the_lock():
    pins = locked()
    assert len(pins) > 50 and "transformers" in pins and "lm_eval" in {n.replace("-", "_") for n in pins}
    drift = {}
    for name, version in pins.items():
        try:
            installed = re.sub(r"[+].*$", "", metadata.version(name))
        except metadata.PackageNotFoundError:
            installed = None
        if installed != version:
            drift[name] = (version, installed)
    assert not drift, f"installed versions differ from requirements.lock (locked, installed): {drift}"


def test_the_project_dependencies_are_locked():
    import tomllib

    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    names = {re.split(r"[\[<>=!~ ]", d, maxsplit=1)[0].lower().replace("_", "-") for d in deps}
    pins = {n.lower().replace("_", "-") for n in locked()}
    assert names <= pins, names - pins
