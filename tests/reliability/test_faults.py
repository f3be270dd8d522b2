"""Faults around a run: damaged results on disk, a full disk, prompts longer than the context.

SIGKILL is in test_kill.py; the end-to-end "corrupt results file is recomputed
and reported" run, the lock, the read-only folder and the bad adapters are in
tests/test_run_all.py.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from benchmark import results as res
from benchmark.registry import REPO
from conftest import run_all_args, subprocess_env, write_gen_task, write_mc_task
from benchmark.resultsets import ResultsFormatError as LeaderboardError, load_combos


def _truncate(folder):
    f = next(folder.glob("results_*.json"))
    f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    return f.name


def _flip_a_byte(folder):
    f = next(folder.glob("samples_tiny_gen_*.jsonl"))
    data = bytearray(f.read_bytes())
    data[len(data) // 2] ^= 0x01
    f.write_bytes(bytes(data))
    return f.name


def _delete_samples(folder):
    f = next(folder.glob("samples_tiny_mc_*.jsonl"))
    f.unlink()
    return f.name


def _empty_results(folder):
    f = next(folder.glob("results_*.json"))
    f.write_bytes(b"")
    return f.name


def _garbage_done(folder):
    (folder / "done.json").write_bytes(b"\x00\xff{not json")
    return "done.json"


def _truncated_done(folder):
    done = folder / "done.json"
    done.write_bytes(done.read_bytes()[:40])
    return "done.json"


@pytest.mark.parametrize("damage, reason", [
    (_truncate, "{name} missing or corrupted"),
    (_empty_results, "{name} missing or corrupted"),
    (_flip_a_byte, "{name} missing or corrupted"),
    (_delete_samples, "{name} missing or corrupted"),
    (_garbage_done, "done.json unreadable"),
    (_truncated_done, "done.json unreadable"),
])
def test_damaged_results_are_never_read_as_complete(matrix_run, tmp_path, damage, reason):
    out = tmp_path / "results"
    shutil.copytree(matrix_run.out, out)
    folder = out / "tiny-llama" / "law"
    input_hash = json.loads((folder / "done.json").read_text())["input_hash"]
    assert res.is_complete(folder, input_hash) == (True, "complete")
    name = damage(folder)
    assert res.is_complete(folder, input_hash) == (False, reason.format(name=name))
    # The page builder refuses it too, naming the file, rather than showing a damaged result.
    with pytest.raises(LeaderboardError, match=r"law/(done\.json|" + name.replace(".", r"\.") + ")"):
        load_combos(out)


def test_changed_inputs_are_not_complete(matrix_run):
    folder = matrix_run.combos["base"]
    assert res.is_complete(folder, "0" * 64) == (False, "inputs changed")


# ------------------------------------------------------------------ full disk ---

FULL_DISK = r"""
import os, resource, signal, sys
sys.path.insert(0, os.getcwd())
from benchmark import run_all
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)         # a write past the limit fails with EFBIG instead
resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))  # no file may grow past 4 KiB: the disk is "full"
sys.exit(run_all.main(sys.argv[1:]))
"""


def _digest(out: Path) -> dict:
    return {str(p.relative_to(out)): hashlib.sha256(p.read_bytes()).hexdigest() for p in out.rglob("*") if p.is_file()}


def test_full_disk_is_a_clear_error_before_work_and_results_stay_intact(matrix_run, tiny_bench, tmp_path):
    out = tmp_path / "results"
    shutil.copytree(matrix_run.out, out)
    before = _digest(out)
    # --force would recompute everything: the refusal must come before any of it.
    proc = subprocess.run([sys.executable, "-c", FULL_DISK, *run_all_args(tiny_bench, out, "--force")], cwd=REPO,
                          env=subprocess_env(tiny_bench.registry), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert f"results folder {out} is not writable (File too large)" in proc.stderr
    assert "free space" in proc.stderr
    assert _digest(out) == before
    assert not list(out.rglob(".write-test*"))


# ------------------------------------------------------------------ prompts longer than the context ---

def test_prompt_longer_than_the_context_is_truncated_counted_and_scored(tiny_bench, tmp_path, run_all_inprocess, caplog):
    """tiny-llama has 2048 positions; these prompts are about 5000 tokens, for generation and for multiple choice."""
    long_text = "Considerando " + "que la ley del Ecuador establece derechos y obligaciones, " * 450
    tasks = tmp_path / "tasks"
    write_gen_task(tasks, "tiny_long_gen", docs=[{"pregunta": long_text + "¿Cuál es la capital?", "respuesta": "Quito"}])
    write_mc_task(tasks, "tiny_long_mc", docs=[{"pregunta": long_text + "¿Capital?", "opciones": ["Quito", "Lima"],
                                                "correcta": 0}])
    out = tmp_path / "results"
    argv = run_all_args(tiny_bench, out, tasks=["tiny_long_gen", "tiny_long_mc"], adapters=["base"], include=tasks)
    with caplog.at_level("WARNING", logger="benchmark"):
        assert run_all_inprocess(tiny_bench.registry, argv) == 0
    data = json.loads(next((out / "tiny-llama" / "base").glob("results_*.json")).read_text())
    assert data["benchmark"]["truncated_prompts"] == 2      # one generation prompt, one multiple-choice context
    assert "longer than 2040 tokens were truncated from the left" in caplog.text   # 2048 - 8 new tokens
    assert "longer than 2048 tokens were truncated from the left" in caplog.text
    assert data["results"]["tiny_long_mc"]["acc,none"] in (0.0, 1.0)
    samples = [json.loads(x) for x in next((out / "tiny-llama" / "base").glob("samples_tiny_long_gen_*.jsonl"))
               .read_text().splitlines()]
    assert isinstance(samples[0]["filtered_resps"][0], str)
