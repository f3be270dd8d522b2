"""SIGKILL during benchmark/run_all.py, at four points, then a rerun.

The matrix is the one of ``matrix_run`` (tests/conftest.py): tiny-llama with
instruct, law and base on two tiny tasks. One output folder goes through:

1. SIGKILL as soon as the first combination's done.json appears;
2. SIGKILL while the next combination is generating;
3. SIGKILL in the middle of writing its results file (half a temporary file on disk);
4. SIGKILL after its results file is written, before done.json;
5. a plain rerun.

After every kill, no folder without a valid done.json is read as a result (by
``is_complete`` and by the leaderboard reader). At the end, the first
combination was never redone, and every result equals the uninterrupted run's.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from benchmark import results as res
from benchmark.registry import REPO
from conftest import run_all_args, subprocess_env
from benchmark.resultsets import load_combos

# run_all with a fault injected at one point of benchmark.results (KILL_AT), then run_all.main.
INJECT = r"""
import os, signal, sys, tempfile
from pathlib import Path
sys.path.insert(0, os.getcwd())
from benchmark import results as res, run_all
point = os.environ["KILL_AT"]
real_write, real_done = res.atomic_write, res.mark_done

def write(path, data):
    if point == "results-write" and Path(path).name.startswith("results_"):
        raw = data.encode() if isinstance(data, str) else data
        fd, tmp = tempfile.mkstemp(prefix=f".{Path(path).name}.", dir=Path(path).parent)
        os.write(fd, raw[: len(raw) // 2])
        os.fsync(fd)
        os.kill(os.getpid(), signal.SIGKILL)
    return real_write(path, data)

def done(*args, **kwargs):
    if point == "before-done":
        os.kill(os.getpid(), signal.SIGKILL)
    return real_done(*args, **kwargs)

res.atomic_write, res.mark_done = write, done
sys.exit(run_all.main(sys.argv[1:]))
"""
TIMEOUT = 240


def run_and_kill_when(argv, env, condition) -> tuple[int, str]:
    """Start run_all; SIGKILL it as soon as condition(output so far) is true. (returncode, output)."""
    proc = subprocess.Popen([sys.executable, "benchmark/run_all.py", *argv], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    chunks = []
    reader = threading.Thread(target=lambda: chunks.extend(iter(lambda: proc.stdout.read1(65536), b"")), daemon=True)
    reader.start()
    deadline = time.time() + TIMEOUT
    try:
        while proc.poll() is None and time.time() < deadline:
            if condition(b"".join(chunks).decode("utf-8", "replace")):
                os.kill(proc.pid, signal.SIGKILL)
                break
            time.sleep(0.05)
        rc = proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    reader.join(timeout=10)
    return rc, b"".join(chunks).decode("utf-8", "replace")


def run_injected(argv, env, point) -> tuple[int, str]:
    out = subprocess.run([sys.executable, "-c", INJECT, *argv], cwd=REPO, env={**env, "KILL_AT": point},
                         capture_output=True, text=True, timeout=TIMEOUT)
    return out.returncode, out.stdout + out.stderr


def valid_combos(out: Path) -> set[str]:
    """Combinations the leaderboard would read as results."""
    return {f"{c['model']}/{c['adapter']}" for c in load_combos(out) if c["status"] == "ok"}


def assert_nothing_half_done_is_valid(out: Path):
    for folder in (out / "tiny-llama").iterdir():
        done = folder / "done.json"
        if done.exists():
            ok, why = res.is_complete(folder, json.loads(done.read_text())["input_hash"])
            assert ok, f"{folder}: {why}"
    assert valid_combos(out) == {f"tiny-llama/{f.name}" for f in (out / "tiny-llama").iterdir()
                                 if (f / "done.json").exists()}


def state(out: Path, log: str = "") -> str:
    """What is on disk (and the end of the run's output), for assertion messages."""
    lines = []
    for folder in sorted((out / "tiny-llama").iterdir()):
        lines.append(f"{folder.name}: {sorted(p.name for p in folder.iterdir())}")
        if (folder / "failed.json").exists():
            lines.append(f"  failed.json: {(folder / 'failed.json').read_text()[:1000]}")
    return "\n".join(lines) + "\n" + log[-3000:]


def metrics(folder: Path) -> dict:
    data = json.loads(next(folder.glob("results_*.json")).read_text())
    return {f"{task}/{k}": v for task, m in data["results"].items() for k, v in m.items() if "," in k}


def generations(folder: Path) -> list:
    rows = [json.loads(x) for x in next(folder.glob("samples_tiny_gen_*.jsonl")).read_text().splitlines()]
    return [r["filtered_resps"] for r in sorted(rows, key=lambda r: r["doc_id"])]


def test_sigkill_at_four_points_then_resume(tiny_bench, matrix_run, tmp_path):
    out = tmp_path / "results"
    argv = run_all_args(tiny_bench, out)
    env = subprocess_env(tiny_bench.registry)
    first, second = out / "tiny-llama" / "instruct", out / "tiny-llama" / "law"

    # 1. as soon as the first combination is complete
    rc, log = run_and_kill_when(argv, env, lambda _: (first / "done.json").exists())
    assert rc == -signal.SIGKILL, state(out, log)
    assert_nothing_half_done_is_valid(out)
    first_done = (first / "done.json").stat().st_mtime_ns
    first_files = {p.name: p.read_bytes() for p in first.glob("*_*.json*")}

    # 2. while the second combination is generating
    rc, log = run_and_kill_when(argv, env, lambda text: "tiny_gen (generate_until)" in text)
    assert rc == -signal.SIGKILL, state(out, log)
    assert not (second / "done.json").exists(), state(out, log)
    assert_nothing_half_done_is_valid(out)

    # 3. half-way through writing the results file
    rc, log = run_injected(argv, env, "results-write")
    assert rc == -signal.SIGKILL, state(out, log)
    assert list(second.glob(".results_*.json.*")), state(out, log)   # half a temporary file
    assert not list(second.glob("results_*.json")) and not (second / "done.json").exists(), state(out, log)
    assert_nothing_half_done_is_valid(out)

    # 4. after the results file, before done.json
    rc, log = run_injected(argv, env, "before-done")
    assert rc == -signal.SIGKILL, state(out, log)
    assert not (second / "done.json").exists(), state(out, log)
    assert list(second.glob("results_*.json")), state(out, log)
    assert "tiny-llama/law" not in valid_combos(out)
    assert_nothing_half_done_is_valid(out)

    # 5. the rerun finishes; the first combination was not redone
    done = subprocess.run([sys.executable, "benchmark/run_all.py", *argv], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=TIMEOUT)
    assert done.returncode == 0, state(out, done.stdout + done.stderr)
    assert (first / "done.json").stat().st_mtime_ns == first_done
    assert {p.name: p.read_bytes() for p in first.glob("*_*.json*")} == first_files
    assert valid_combos(out) == {"tiny-llama/instruct", "tiny-llama/law", "tiny-llama/base"}
    assert not list(out.rglob(".*_*.json*")), "half-written temporary files are cleaned up"

    # ... and every result equals the uninterrupted run's
    for adapter, reference in matrix_run.combos.items():
        assert metrics(out / "tiny-llama" / adapter) == pytest.approx(metrics(reference), abs=1e-6), adapter
        assert generations(out / "tiny-llama" / adapter) == generations(reference), adapter
