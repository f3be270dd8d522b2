"""The same law answers under the 1.x and the 2.0 key-fact scorers, adapter against base.

Reads a ``run_all`` results folder that holds ``ecuador_law_es_qa`` (whole split) for base and
adapter combinations, keeps each answer as generated, and scores it twice:

* 2.0: ``hechos_recall`` / ``hechos_todos`` of the task's current ``process_results`` (typed facts),
  recomputed here, so every answer is scored by the same data and scorer whenever it was generated;
* 1.x: the lexical scorer of the last 1.x release, i.e. the key-fact strings of that release read
  from git (``--old-rev``) and matched with ``benchmark.textnorm.contains``, with the 1.x language
  gate (``textmetrics.spanish_score`` of 0 zeroes the item).

Each adapter's difference from its base comes with a paired bootstrap 95% interval over
documents (``scipy.stats.bootstrap``, ``paired=True``)::

    python -m benchmark.lawrescore --results results-full/law2-bf16 [--old-rev REV] [--markdown]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from benchmark import lawdata, textmetrics
from benchmark.textnorm import contains

OLD_REV = "94e1937"   # the last commit of ecuador_law_es 1.1
SUBSETS = ("ecuador_law_es_qa_visto", "ecuador_law_es_qa_nuevo")
RESAMPLES = 2000
SEED = 20240917


def old_facts(rev: str = OLD_REV) -> dict[str, list[str]]:
    """{item id: key-fact strings} of the test split at ``rev``."""
    folder = "tasks/ecuador_law_es/data/test"
    names = subprocess.run(["git", "ls-tree", "--name-only", f"{rev}:{folder}"], capture_output=True, text=True,
                           cwd=lawdata.REPO, check=True).stdout.split()
    facts = {}
    for name in names:
        text = subprocess.run(["git", "show", f"{rev}:{folder}/{name}"], capture_output=True, text=True,
                              cwd=lawdata.REPO, check=True).stdout
        for line in text.splitlines():
            if line.strip():
                row = json.loads(line)
                facts[row["id"]] = row["hechos_clave"]
    return facts


def old_score(answer: str, facts: list[str]) -> float:
    answer = (answer or "").strip()
    if textmetrics.spanish_score(answer) == 0.0:
        return 0.0
    return sum(contains(answer, f) for f in facts) / len(facts)


def _answers(combo: dict, subset: str, items: dict, utils) -> dict[str, dict]:
    out = {}
    for s in combo["samples"].get(subset, []):
        resp = s.get("filtered_resps", s.get("resps"))
        while isinstance(resp, list):
            resp = resp[0] if resp else ""
        doc = items[s["doc"]["id"]]
        scores = utils.process_results({**doc, "hechos_clave": lawdata.dump_facts(doc["hechos_clave"])}, [resp or ""])
        out[doc["id"]] = {"answer": resp or "", "new": scores["hechos_recall"], "strict": scores["hechos_todos"]}
    return out


def paired_interval(a: np.ndarray, b: np.ndarray) -> tuple[float, float, float]:
    """Mean of a - b with a paired bootstrap 95% interval (scipy, percentile method)."""
    from scipy.stats import bootstrap

    if np.all(a == b):
        return 0.0, 0.0, 0.0
    res = bootstrap((a, b), lambda x, y, axis=-1: np.mean(x - y, axis=axis), paired=True, vectorized=True,
                    n_resamples=RESAMPLES, confidence_level=0.95, method="percentile",
                    random_state=np.random.default_rng(SEED))
    return float(np.mean(a - b)), float(res.confidence_interval.low), float(res.confidence_interval.high)


def rescore(results: Path, rev: str = OLD_REV) -> list[dict]:
    from benchmark.resultsets import load_combos

    from benchmark.tasks import load_task_module

    facts = old_facts(rev)
    items = {r["id"]: r for r in lawdata.load_split("test")}
    utils = load_task_module(lawdata.TASK_DIR / "utils.py", "ecuador_law_es_utils")
    combos = [c for c in load_combos(results) if c["status"] == "ok"]
    rows = []
    for model in sorted({c["model"] for c in combos}):
        base = next((c for c in combos if c["model"] == model and c["adapter"] == "base"), None)
        for combo in [c for c in combos if c["model"] == model]:
            for subset in SUBSETS:
                mine = _answers(combo, subset, items, utils)
                ref = _answers(base, subset, items, utils) if base else {}
                ids = sorted(mine.keys() & ref.keys()) if ref else sorted(mine)
                if not ids:
                    continue
                row = {"model": model, "adapter": combo["adapter"], "subset": subset.rsplit("_", 1)[1], "n": len(ids)}
                for name, get in (("old", lambda d, i: old_score(d[i]["answer"], facts[i])),
                                  ("new", lambda d, i: d[i]["new"]), ("strict", lambda d, i: d[i]["strict"])):
                    a = np.array([get(mine, i) for i in ids])
                    row[name] = float(a.mean())
                    if ref and combo["adapter"] != "base":
                        b = np.array([get(ref, i) for i in ids])
                        row[f"{name}_delta"] = paired_interval(a, b)
                rows.append(row)
    return rows


def markdown(rows: list[dict]) -> str:
    def cell(row, name):
        if f"{name}_delta" not in row:
            return f"{row[name]:.3f}"
        d, lo, hi = row[f"{name}_delta"]
        return f"{row[name]:.3f} ({d:+.3f} [{lo:+.3f}, {hi:+.3f}])"

    lines = ["| model | adapter | subset | n | key facts 1.x (lexical) | key facts 2.0 (typed) | all facts 2.0 (strict) |",
             "|---|---|---|---:|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['adapter']} | {r['subset']} | {r['n']} | {cell(r, 'old')} | "
                     f"{cell(r, 'new')} | {cell(r, 'strict')} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", type=Path, required=True, help="run_all output folder with ecuador_law_es_qa")
    parser.add_argument("--old-rev", default=OLD_REV, help=f"git revision of the 1.x data (default {OLD_REV})")
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table (default: JSON lines)")
    args = parser.parse_args(argv)
    rows = rescore(args.results, args.old_rev)
    if not rows:
        print(f"error: no finished ecuador_law_es_qa combinations in {args.results}", file=sys.stderr)
        return 2
    if args.markdown:
        print(markdown(rows))
    else:
        for r in rows:
            print(json.dumps(r))
    return 0


if __name__ == "__main__":
    sys.exit(main())
