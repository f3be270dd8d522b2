"""`python -m benchmark generate` and `export-webui`: the seed's webui workflow from the command line."""

from __future__ import annotations

import pytest

from benchmark.__main__ import main


@pytest.mark.parametrize("preset", ["Deterministic", "Contrastive Search", "Llama2-seed"])
def test_generate_prints_a_completion_with_each_kind_of_preset(preset, bench_cache, smoke_checkpoints, capsys):
    # Contrastive search goes through a custom_generate callable, which gets no tokenizer: stop strings
    # must still work (they did not, before stopping criteria were passed as objects).
    rc = main(["generate", "--model", "tiny-llama", "--preset", preset, "--max-new-tokens", "4",
               "--prompt", "¿Qué es el IVA?", "--cache-dir", str(bench_cache)])
    out = capsys.readouterr()
    assert rc == 0, out.err
    assert "\nerror: " not in "\n" + out.err   # the CLI reports failures as "error: ..."


def test_generate_refuses_unknown_model(capsys):
    assert main(["generate", "--model", "no-such-model", "--prompt", "hola"]) == 2
    assert "unknown model 'no-such-model'" in capsys.readouterr().err


def test_export_webui_installs_templates_presets_and_a_note(tmp_path):
    webui = tmp_path / "text-generation-webui"
    (webui / "user_data").mkdir(parents=True)
    assert main(["export-webui", "--webui-dir", str(webui), "--models", "smollm2-135m-instruct"]) == 0
    base = webui / "user_data"
    assert (base / "instruction-templates" / "ChatML-es.yaml").is_file()
    assert (base / "presets" / "Contrastive Search.yaml").is_file()
    assert (base / "loras" / "smollm2-135m-instruct-law" / "adapter_config.json").is_file()
    note = (base / "es-llm-bench.md").read_text()
    assert "smollm2-135m-instruct-merged | ChatML-es | Contrastive Search" in note
