"""Reading finished combinations: the only way results folders come back in (page, comparisons, rescoring).

``load_combos(folder)`` returns every ``<model>/<adapter>`` folder that finished (its ``done.json`` checks
every file's sha256) or failed, with lm-eval's results and the per-document samples.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from benchmark.results import sha256_bytes

REQUIRED = ("model", "adapter", "precision", "template", "preset", "sample")  # keys of results["benchmark"]
STAMP = re.compile(r"\d{4}-\d{2}-\d{2}T[0-9.\-]+")


class ResultsFormatError(ValueError):
    """A results folder or file that is not what run_all writes; the message names the file and the fix."""


def _read_json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ResultsFormatError(f"{path}: not readable JSON ({exc})") from None


def _check_results(path: Path, data) -> dict:
    if not isinstance(data, dict):
        raise ResultsFormatError(f"{path}: expected a JSON object (lm-eval results), got {type(data).__name__}")
    if not isinstance(data.get("results"), dict):
        raise ResultsFormatError(f"{path}: missing required field 'results' (lm-eval's per-task metrics)")
    bench = data.get("benchmark")
    if not isinstance(bench, dict):
        raise ResultsFormatError(f"{path}: missing required field 'benchmark' (provenance written by run_all)")
    for key in REQUIRED:
        if bench.get(key) in (None, ""):
            raise ResultsFormatError(f"{path}: missing required field 'benchmark.{key}'")
    for task, metrics in data["results"].items():
        if not isinstance(metrics, dict):
            raise ResultsFormatError(f"{path}: field 'results.{task}' must be an object of metrics")
    return data


def _check_done(folder: Path) -> None:
    """done.json lists a sha256 per file: a file edited or truncated since the run is refused."""
    record = _read_json(folder / "done.json")
    for name, digest in (record.get("files") or {}).items() if isinstance(record, dict) else ():
        f = folder / name
        if not f.is_file() or sha256_bytes(f.read_bytes()) != digest:
            raise ResultsFormatError(f"{f}: missing or changed since the run (checksum in {folder / 'done.json'} "
                                   "differs); rerun this combination with benchmark/run_all.py --force")


def read_samples(path: Path) -> list[dict]:
    from benchmark.jsonl import read_jsonl

    rows = []
    for number, row in read_jsonl(path, error=lambda p, n, problem: ResultsFormatError(f"{p}, line {n}: {problem}")):
        if "doc_id" not in row:
            raise ResultsFormatError(f"{path}, line {number}: missing required field 'doc_id'")
        rows.append(row)
    return rows


def _samples_files(folder: Path, tasks) -> dict[str, Path]:
    """Newest samples_<task>_<timestamp>.jsonl per task (task names may contain '_')."""
    found = {}
    for task in tasks:
        prefix = f"samples_{task}_"
        files = sorted(p for p in folder.glob("samples_*.jsonl")
                       if p.name.startswith(prefix) and STAMP.fullmatch(p.name[len(prefix):-len(".jsonl")]))
        if files:
            found[task] = files[-1]
    return found


def load_combo(folder: Path) -> dict | None:
    """One ``<model>/<adapter>`` folder: finished (``status`` ok, with results and samples), failed, or None."""
    folder = Path(folder)
    combo = {"model": folder.parent.name, "adapter": folder.name, "folder": folder}
    if (folder / "done.json").is_file():
        files = sorted(folder.glob("results_*.json"))
        if not files:
            raise ResultsFormatError(f"{folder}: done.json but no results_*.json file")
        _check_done(folder)
        data = _check_results(files[-1], _read_json(files[-1]))
        combo.update(status="ok", data=data, samples={
            task: read_samples(p) for task, p in _samples_files(folder, data["results"]).items()})
    elif (folder / "failed.json").is_file():
        record = _read_json(folder / "failed.json")
        error = record.get("error") if isinstance(record, dict) else None
        combo.update(status="failed", error=str(error or "failed (no error text recorded)"))
    else:
        return None  # not run yet, or interrupted
    return combo


def load_combos(results_dir: Path) -> list[dict]:
    """Every <model>/<adapter> folder that finished (done.json) or failed (failed.json)."""
    results_dir = Path(results_dir)
    if not results_dir.is_dir():
        raise ResultsFormatError(f"results folder {results_dir} does not exist; run benchmark/run_all.py first")
    combos = [c for c in (load_combo(folder) for folder in sorted(p for p in results_dir.glob("*/*") if p.is_dir()))
              if c is not None]
    combos.sort(key=lambda c: (c["model"], c["adapter"] != "base", c["adapter"]))
    return combos
