"""The published results: finished whole-split combinations, kept compact in git under ``leaderboard/results/``.

A results folder of ``run_all`` holds lm-eval's results JSON and one samples JSONL per task, each sample
carrying its document and its prompt. The published copy keeps the same information in less room::

    leaderboard/results/
      docs.jsonl.gz                      every document once: {"task", "key", "doc"}
      <model>/prompts.jsonl.gz           every prompt once per model (its template): {"key", "arguments"}
      <model>/<adapter>/results.json     lm-eval's results JSON with run_all's provenance (``benchmark``)
      <model>/<adapter>/samples.jsonl.gz per document: answer, target, scores, and the keys of doc and prompt
      <model>/<adapter>/done.json        sha256 of the two files above, and the run's input hash

``publish(folder)`` copies one finished combination in (``run_all --full --publish`` does it as each
combination finishes, so a long run can be committed in parts); ``load_published()`` returns the
combinations in the shape of :func:`benchmark.resultsets.load_combos`, so the page and the comparisons
read both the same way. gzip members are written with a zero timestamp: the same results give the same
bytes.
"""

from __future__ import annotations

import gzip
import io
import json
from pathlib import Path

from benchmark.results import atomic_write, sha256_bytes
from benchmark.resultsets import ResultsFormatError, _check_done, _check_results, load_combo

REPO = Path(__file__).resolve().parent.parent
STORE = REPO / "leaderboard" / "results"
DOCS = "docs.jsonl.gz"
PROMPTS = "prompts.jsonl.gz"
SAMPLES = "samples.jsonl.gz"
RESULTS = "results.json"
KEPT = ("doc_id", "target", "filtered_resps", "filter", "metrics")   # per sample, besides the scores
DROPPED = {"doc", "arguments", "resps", "doc_hash", "prompt_hash", "target_hash"}


def _key(value) -> str:
    return sha256_bytes(json.dumps(value, sort_keys=True, ensure_ascii=False, default=str).encode())[:20]


def _gzip_lines(rows) -> bytes:
    buffer = io.BytesIO()
    with gzip.GzipFile(fileobj=buffer, mode="wb", mtime=0, compresslevel=9) as f:
        for row in rows:
            f.write((json.dumps(row, ensure_ascii=False, sort_keys=True) + "\n").encode())
    return buffer.getvalue()


def _read_gzip_lines(path: Path) -> list[dict]:
    try:
        with gzip.open(path, "rt", encoding="utf-8") as f:
            return [json.loads(line) for line in f if line.strip()]
    except (OSError, ValueError) as exc:
        raise ResultsFormatError(f"{path}: not a readable gzip JSONL file ({exc}); restore it from git") from None


def _merge_table(path: Path, new: dict[str, dict], key_fields: tuple[str, ...]) -> None:
    """Add rows to a shared table (docs, prompts), keeping the old ones; sorted, so git sees small changes."""
    rows = {tuple(r[k] for k in key_fields): r for r in (_read_gzip_lines(path) if path.is_file() else [])}
    before = len(rows)
    rows.update(new)
    if len(rows) != before or not path.is_file():
        atomic_write(path, _gzip_lines(rows[k] for k in sorted(rows)))


def published_input_hash(model: str, adapter: str, store: Path = STORE) -> str | None:
    """The input hash of a published combination (what ``run_all`` compares to skip it), or None."""
    done = Path(store) / model / adapter / "done.json"
    try:
        return json.loads(done.read_text(encoding="utf-8")).get("input_hash")
    except (OSError, ValueError):
        return None


def publish(folder: Path, store: Path = STORE) -> Path:
    """Copy one finished whole-split combination folder into the store; the combination's folder there."""
    from leaderboard.build import portable

    folder, store = Path(folder), Path(store)
    combo = load_combo(folder)
    if combo is None or combo["status"] != "ok":
        raise ResultsFormatError(f"{folder}: not a finished combination (no done.json); nothing to publish")
    data = combo["data"]
    if data["benchmark"].get("samples"):
        raise ResultsFormatError(f"{folder}: scored on a sample ({data['benchmark'].get('sample')}); only whole "
                                 "test splits are published: rerun it with run_all --full")
    docs, prompts, rows = {}, {}, []
    for task, samples in sorted(combo["samples"].items()):
        for s in samples:
            doc_key, prompt_key = _key(s.get("doc")), _key(s.get("arguments"))
            docs[(task, doc_key)] = {"task": task, "key": doc_key, "doc": s.get("doc")}
            prompts[(prompt_key,)] = {"key": prompt_key, "arguments": s.get("arguments")}
            row = {"task": task, "doc_key": doc_key, "prompt_key": prompt_key,
                   **{k: s[k] for k in KEPT if k in s},
                   **{k: v for k, v in s.items() if k not in DROPPED and k not in KEPT}}
            rows.append(row)
    target = store / combo["model"] / combo["adapter"]
    target.mkdir(parents=True, exist_ok=True)
    _merge_table(store / DOCS, docs, ("task", "key"))
    _merge_table(store / combo["model"] / PROMPTS, prompts, ("key",))
    results = json.dumps(portable(data), ensure_ascii=False, indent=1, default=str).encode()
    samples = _gzip_lines(rows)
    atomic_write(target / RESULTS, results)
    atomic_write(target / SAMPLES, samples)
    atomic_write(target / "done.json", json.dumps({
        "schema": 1, "input_hash": data["benchmark"].get("input_hash"),
        "files": {RESULTS: sha256_bytes(results), SAMPLES: sha256_bytes(samples)}}, indent=1))
    return target


def load_published(store: Path = STORE) -> list[dict]:
    """Every published combination, as ``load_combos`` returns them, with ``published=True``."""
    store = Path(store)
    if not store.is_dir():
        return []
    docs = None
    combos = []
    for folder in sorted(p for p in store.glob("*/*") if p.is_dir() and (p / "done.json").is_file()):
        _check_done(folder)
        if docs is None:
            docs = {(r["task"], r["key"]): r["doc"] for r in _read_gzip_lines(store / DOCS)}
        prompts_file = folder.parent / PROMPTS
        prompts = {r["key"]: r["arguments"] for r in _read_gzip_lines(prompts_file)}
        data = _check_results(folder / RESULTS, json.loads((folder / RESULTS).read_text(encoding="utf-8")))
        samples: dict[str, list[dict]] = {}
        for row in _read_gzip_lines(folder / SAMPLES):
            row = dict(row)
            task = row.pop("task")
            doc_key, prompt_key = row.pop("doc_key"), row.pop("prompt_key")
            if (task, doc_key) not in docs or prompt_key not in prompts:
                raise ResultsFormatError(f"{folder / SAMPLES}: document or prompt of {task} doc {row.get('doc_id')} "
                                         f"is missing from {store / DOCS} or {prompts_file}; restore them from git")
            samples.setdefault(task, []).append({**row, "doc": docs[(task, doc_key)], "arguments": prompts[prompt_key]})
        combos.append({"model": folder.parent.name, "adapter": folder.name, "folder": folder, "status": "ok",
                       "data": data, "samples": samples, "published": True})
    combos.sort(key=lambda c: (c["model"], c["adapter"] != "base", c["adapter"]))
    return combos
