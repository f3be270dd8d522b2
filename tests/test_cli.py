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


@pytest.mark.parametrize(("command", "expected"), [
    ("run", "--adapters"), ("compare", "--results"), ("leaderboard", "usage: "), ("chat", "--chat"),
])
def test_one_entry_point_for_every_command(command, expected, capsys):
    """`es-llm-bench run|compare|leaderboard|chat` reach the programs behind them, with their own --help."""
    with pytest.raises(SystemExit) as caught:
        main([command, "--help"])
    assert caught.value.code == 0
    assert expected in capsys.readouterr().out


def test_the_installed_script_is_the_same_entry_point():
    import subprocess
    import sys
    from pathlib import Path

    script = Path(sys.executable).parent / "es-llm-bench"   # installed by pyproject's [project.scripts]
    out = subprocess.run([str(script), "run", "--help"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "--adapters" in out.stdout, out.stderr
