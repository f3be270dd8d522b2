"""Build the static leaderboard page from the results folders (never calls a model).

    python -m leaderboard.build --results results --out leaderboard/index.html

or, from Python (benchmark/run_all.py does this after a run)::

    from leaderboard.build import build
    build(Path("results"), Path("leaderboard/index.html"))

Input is the layout of :mod:`benchmark.results`:
``<results>/<model>/<adapter|base>/{results_*.json, samples_<task>_*.jsonl, done.json | failed.json}``.
Only folders with ``done.json`` are scored; folders with ``failed.json`` become a
row showing the error. The output is one self-contained HTML file (data inlined
as JSON, inline CSS/JS/SVG, nothing fetched), so it opens from disk.

For each adapter row and task the page shows the change against the same
model's base with a paired bootstrap 95% interval: documents are matched by
``doc_id`` and resampled together; per-sample scores are averaged, chrF++ is
recomputed as a corpus score on every resample. A group column (e.g.
``ecuador_law_es``) resamples within each subtask and weights subtasks by size,
like lm-eval's ``weight_by_size`` group mean.
"""

from __future__ import annotations

import argparse
import datetime
import html
import json
import math
import re
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

from benchmark import textmetrics
from benchmark.results import atomic_write, sha256_bytes

# Main metric of a task: the first of these found in its results -> (decimals shown, top of the chart scale).
MAIN_METRICS = {
    "hechos_recall": (3, 1.0),
    "acc": (3, 1.0),
    "prompt_level_strict_acc": (3, 1.0),
    "chrf_pp": (1, 100.0),
}
CORPUS_METRICS = {"chrf_pp"}  # per-sample values are (reference, prediction) pairs
REQUIRED = ("model", "adapter", "precision", "template", "preset", "sample")  # keys of results["benchmark"]
RESAMPLES = 1000
SEED = 20240917
TEMPLATE = Path(__file__).with_name("template.html")
REPO = Path(__file__).resolve().parent.parent
STAMP = re.compile(r"\d{4}-\d{2}-\d{2}T[0-9.\-]+")
LOG_KEYS = {"doc_id", "doc", "target", "arguments", "resps", "filtered_resps", "filter", "metrics",
            "doc_hash", "prompt_hash", "target_hash"}


class LeaderboardError(ValueError):
    pass


# ------------------------------------------------------------------ reading ---

def _read_json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise LeaderboardError(f"{path}: not readable JSON ({exc})") from None


def _check_results(path: Path, data) -> dict:
    if not isinstance(data, dict):
        raise LeaderboardError(f"{path}: expected a JSON object (lm-eval results), got {type(data).__name__}")
    if not isinstance(data.get("results"), dict):
        raise LeaderboardError(f"{path}: missing required field 'results' (lm-eval's per-task metrics)")
    bench = data.get("benchmark")
    if not isinstance(bench, dict):
        raise LeaderboardError(f"{path}: missing required field 'benchmark' (provenance written by run_all)")
    for key in REQUIRED:
        if bench.get(key) in (None, ""):
            raise LeaderboardError(f"{path}: missing required field 'benchmark.{key}'")
    for task, metrics in data["results"].items():
        if not isinstance(metrics, dict):
            raise LeaderboardError(f"{path}: field 'results.{task}' must be an object of metrics")
    return data


def _check_done(folder: Path) -> None:
    """done.json lists a sha256 per file: a file edited or truncated since the run is refused."""
    record = _read_json(folder / "done.json")
    for name, digest in (record.get("files") or {}).items() if isinstance(record, dict) else ():
        f = folder / name
        if not f.is_file() or sha256_bytes(f.read_bytes()) != digest:
            raise LeaderboardError(f"{f}: missing or changed since the run (checksum in {folder / 'done.json'} "
                                   "differs); rerun this combination with benchmark/run_all.py --force")


def read_samples(path: Path) -> list[dict]:
    from benchmark.jsonl import read_jsonl

    rows = []
    for number, row in read_jsonl(path, error=lambda p, n, problem: LeaderboardError(f"{p}, line {n}: {problem}")):
        if "doc_id" not in row:
            raise LeaderboardError(f"{path}, line {number}: missing required field 'doc_id'")
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


def load_combos(results_dir: Path) -> list[dict]:
    """Every <model>/<adapter> folder that finished (done.json) or failed (failed.json)."""
    results_dir = Path(results_dir)
    if not results_dir.is_dir():
        raise LeaderboardError(f"results folder {results_dir} does not exist; run benchmark/run_all.py first")
    combos = []
    for folder in sorted(p for p in results_dir.glob("*/*") if p.is_dir()):
        combo = {"model": folder.parent.name, "adapter": folder.name, "folder": folder}
        if (folder / "done.json").is_file():
            files = sorted(folder.glob("results_*.json"))
            if not files:
                raise LeaderboardError(f"{folder}: done.json but no results_*.json file")
            _check_done(folder)
            data = _check_results(files[-1], _read_json(files[-1]))
            combo.update(status="ok", data=data, samples={
                task: read_samples(p) for task, p in _samples_files(folder, data["results"]).items()})
        elif (folder / "failed.json").is_file():
            record = _read_json(folder / "failed.json")
            error = record.get("error") if isinstance(record, dict) else None
            combo.update(status="failed", error=str(error or "failed (no error text recorded)"))
        else:
            continue  # not run yet, or interrupted
        combos.append(combo)
    combos.sort(key=lambda c: (c["model"], c["adapter"] != "base", c["adapter"]))
    return combos


def main_metric(metrics: dict) -> tuple[str, str] | None:
    """(metric, key in lm-eval's results) of the first MAIN_METRICS entry present, e.g. ('acc', 'acc,none')."""
    for name in MAIN_METRICS:
        keys = [k for k in metrics if k.split(",")[0] == name]
        if keys:
            return name, (f"{name},none" if f"{name},none" in keys else keys[0])
    return None


def _number(value) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


# ------------------------------------------------------------------ bootstrap ---

def _chrf_scorer(pairs: list) -> Callable:
    """idx -> corpus chrF++ of the resampled (reference, prediction) pairs.

    Sums sacrebleu's per-sentence statistics (what sacrebleu's own paired bootstrap
    does): identical to corpus_chrfpp on the resampled lists, checked on the full set,
    and ~100x faster. Falls back to calling corpus_chrfpp when that check fails.
    """
    refs, preds = [str(r) for r, _ in pairs], [str(p) for _, p in pairs]
    full = textmetrics.corpus_chrfpp(preds, refs)
    metric = getattr(textmetrics, "_CHRFPP", None)
    try:
        stats = np.array(metric._extract_corpus_statistics([p.strip() for p in preds], [[r.strip() for r in refs]]))
        if abs(metric._compute_score_from_stats(stats.sum(0)).score - full) < 1e-9:
            return lambda idx: metric._compute_score_from_stats(stats[idx].sum(0)).score
    except Exception:  # noqa: BLE001 - private sacrebleu API changed: use the public function
        pass
    return lambda idx: textmetrics.corpus_chrfpp([preds[i] for i in idx], [refs[i] for i in idx])


def _scorer(metric: str, values: list) -> Callable | None:
    if metric in CORPUS_METRICS:
        if all(isinstance(v, (list, tuple)) and len(v) == 2 for v in values):
            return _chrf_scorer(values)
        return None
    numbers = [_number(float(v) if isinstance(v, bool) else v) for v in values]
    if any(n is None for n in numbers):
        return None
    arr = np.array(numbers)
    return lambda idx: float(arr[idx].mean())


def _per_doc(samples: list[dict], metric: str) -> dict:
    return {json.dumps(s["doc_id"]): s[metric] for s in samples if s.get(metric) is not None}


def _leaves(task: str, data: dict) -> list[str]:
    children = (data.get("group_subtasks") or {}).get(task)
    return [leaf for child in children for leaf in _leaves(child, data)] if children else [task]


def paired_delta(base: dict, other: dict, task: str, metric: str,
                 resamples: int = RESAMPLES, seed: int = SEED) -> dict | None:
    """{delta, lo, hi, n}: other - base on the docs both scored, with a paired bootstrap 95% interval."""
    parts = []
    for leaf in _leaves(task, other["data"]):
        a = _per_doc(other["samples"].get(leaf, []), metric)
        b = _per_doc(base["samples"].get(leaf, []), metric)
        ids = sorted(a.keys() & b.keys())
        if not ids:
            continue
        fa, fb = _scorer(metric, [a[i] for i in ids]), _scorer(metric, [b[i] for i in ids])
        if fa is None or fb is None:
            return None
        parts.append((len(ids), fa, fb))
    if not parts:
        return None
    total = sum(n for n, _, _ in parts)

    def stat(indices):
        return sum(n * (fa(idx) - fb(idx)) for (n, fa, fb), idx in zip(parts, indices)) / total

    rng = np.random.default_rng(seed)
    draws = [stat([rng.integers(0, n, n) for n, _, _ in parts]) for _ in range(resamples)]
    lo, hi = np.percentile(draws, [2.5, 97.5])
    return {"delta": stat([np.arange(n) for n, _, _ in parts]), "lo": float(lo), "hi": float(hi), "n": total}


# ------------------------------------------------------------------ page data ---

def _prompt_and_choices(arguments) -> tuple[str, list[str]]:
    """The prompt as sent, and the continuations (multiple choice) from either logged shape."""
    if isinstance(arguments, dict):  # {"gen_args_0": {"arg_0": prompt, "arg_1": ...}, ...}
        args = [[v.get("arg_0"), v.get("arg_1")] if isinstance(v, dict) else [v] for v in arguments.values()]
    elif isinstance(arguments, list):  # [[prompt, gen_kwargs]] or [[context, continuation], ...]
        args = [list(a) if isinstance(a, (list, tuple)) else [a] for a in arguments]
    else:
        return ("" if arguments is None else str(arguments)), []
    prompt = str(args[0][0]) if args and args[0] and args[0][0] is not None else ""
    choices = [a[1] for a in args if len(a) > 1 and isinstance(a[1], str)]
    return prompt, choices


def _flatten(value) -> list:
    return [x for v in value for x in _flatten(v)] if isinstance(value, (list, tuple)) else [value]


def sample_view(sample: dict) -> dict:
    """What the sample browser shows for one logged sample."""
    prompt, choices = _prompt_and_choices(sample.get("arguments"))
    resps = sample.get("filtered_resps", sample.get("resps"))
    target = sample.get("target")
    if choices and isinstance(resps, list) and len(resps) == len(choices):  # log-likelihood per choice
        lls = [_number(_flatten(r)[0]) for r in resps]
        best = max(range(len(lls)), key=lambda i: -math.inf if lls[i] is None else lls[i])
        output = "\n".join(f"{'→' if i == best else ' '} [{i}] {c.strip()}  (loglik {ll if ll is None else round(ll, 3)})"
                           for i, (c, ll) in enumerate(zip(choices, lls)))
        if isinstance(target, int) and 0 <= target < len(choices):
            target = f"[{target}] {choices[target].strip()}"
    else:
        output = "\n".join(str(x) for x in _flatten(resps if resps is not None else []))
    names = sample.get("metrics") if isinstance(sample.get("metrics"), list) else \
        [k for k in sample if k not in LOG_KEYS]
    scores = {}
    for name in names:
        value = sample.get(name)
        if isinstance(value, (list, tuple)) and len(value) == 2 and all(isinstance(v, str) for v in value):
            if name in CORPUS_METRICS:
                scores[f"{name} (sentence)"] = round(textmetrics.chrfpp(value[1], value[0]), 2)
        elif value is None or isinstance(value, (bool, int, float, str)):
            scores[name] = value
        elif isinstance(value, list) and all(isinstance(v, (bool, int, float)) for v in value):
            scores[name] = value  # e.g. ifeval's inst_level_strict_acc, one value per instruction
    return {"doc_id": sample.get("doc_id"), "prompt": prompt, "output": output,
            "target": target if isinstance(target, str) else json.dumps(target, ensure_ascii=False), "scores": scores}


def page_data(combos: list[dict], resamples: int = RESAMPLES) -> dict:
    ok = [c for c in combos if c["status"] == "ok"]
    tasks = {}
    for c in ok:
        for task, metrics in c["data"]["results"].items():
            found = main_metric(metrics)
            if found and task not in tasks:
                tasks[task] = {"name": task, "metric": found[0], "decimals": MAIN_METRICS[found[0]][0],
                               "group": bool((c["data"].get("group_subtasks") or {}).get(task))}
    bases = {c["model"]: c for c in ok if c["adapter"] == "base"}
    rows, samples = [], {}
    for i, c in enumerate(combos):
        row = {"id": i, "model": c["model"], "adapter": c["adapter"], "status": c["status"]}
        if c["status"] == "failed":
            rows.append({**row, "error": c["error"]})
            continue
        data, bench = c["data"], c["data"]["benchmark"]
        row.update({k: str(bench[k]) for k in REQUIRED[2:]}, display_name=str(bench.get("display_name") or ""))
        row["provenance"] = {"folder": str(c["folder"]), "benchmark": bench,
                             **{k: data[k] for k in ("versions", "n-samples", "date", "git_hash") if k in data}}
        cells, base = {}, bases.get(c["model"]) if c["adapter"] != "base" else None
        for name, task in tasks.items():
            metrics = data["results"].get(name) or {}
            found = main_metric(metrics)
            if not found or found[0] != task["metric"] or _number(metrics[found[1]]) is None:
                continue
            metric, key = found
            n = (data.get("n-samples") or {}).get(name, {})
            cells[name] = {"value": _number(metrics[key]),
                           "stderr": _number(metrics.get(key.replace(",", "_stderr,", 1))),
                           "n": n.get("effective") if isinstance(n, dict) else None,
                           "delta": paired_delta(base, c, name, metric, resamples) if base else None}
        row["cells"] = cells
        rows.append(row)
        samples[i] = {task: [sample_view(s) for s in logged] for task, logged in c["samples"].items()}
    return {"tasks": [tasks[t] for t in sorted(tasks)], "rows": rows, "samples": samples, "resamples": resamples, "seed": SEED}


# ------------------------------------------------------------------ charts (server-side SVG) ---

def bar_chart(task: dict, rows: list[dict]) -> str:
    """Horizontal bars of one task's main metric per combination, ± stderr; every label escaped."""
    bars = [(f"{r['model']} / {r['adapter']}", r["cells"][task["name"]]) for r in rows
            if r["status"] == "ok" and task["name"] in r["cells"]]
    top = max([MAIN_METRICS[task["metric"]][1]] + [c["value"] for _, c in bars])
    label_w, plot_w, h = 230, 300, 20
    out = [f'<figure class="chart"><figcaption>{html.escape(task["name"])} '
           f'<span class="metric">({html.escape(task["metric"])})</span></figcaption>'
           f'<svg xmlns="http://www.w3.org/2000/svg" width="{label_w + plot_w + 70}" height="{h * len(bars) + 8}" '
           f'role="img" aria-label="{html.escape(task["name"])}">']
    for i, (label, cell) in enumerate(bars):
        y, w = 4 + i * h, plot_w * max(cell["value"], 0) / top
        short = label if len(label) <= 34 else label[:33] + "…"
        out.append(f'<text x="{label_w - 6}" y="{y + 13}" text-anchor="end">{html.escape(short)}</text>'
                   f'<rect x="{label_w}" y="{y + 2}" width="{w:.1f}" height="{h - 6}" class="bar"><title>'
                   f'{html.escape(label)}</title></rect>')
        if cell["stderr"]:
            lo, hi = (label_w + plot_w * min(max(cell["value"] + s * cell["stderr"], 0), top) / top for s in (-1, 1))
            out.append(f'<line x1="{lo:.1f}" x2="{hi:.1f}" y1="{y + h / 2:.1f}" y2="{y + h / 2:.1f}" class="err"/>')
            w = max(w, hi - label_w)
        out.append(f'<text x="{label_w + w + 6:.1f}" y="{y + 13}">{cell["value"]:.{task["decimals"]}f}</text>')
    return "".join(out) + "</svg></figure>"


def _finite(value):
    """NaN/inf -> None, recursively (JSON.parse rejects NaN)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def _script_json(data) -> str:
    """JSON for a <script type="application/json"> block: no '<', '>' or '&' can end the block early."""
    text = json.dumps(_finite(data), ensure_ascii=False, default=str, allow_nan=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026") \
        .replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


def render(data: dict, template: str = None) -> str:
    template = template if template is not None else TEMPLATE.read_text(encoding="utf-8")
    charts = "".join(bar_chart(t, data["rows"]) for t in data["tasks"]) or "<p>No scored tasks yet.</p>"
    parts = {"GENERATED": html.escape(datetime.datetime.now().strftime("%Y-%m-%d %H:%M")),
             "CHARTS": charts, "DATA": _script_json(data)}
    # one pass: text inserted for one placeholder is never scanned for another
    return re.sub(r"\{\{(GENERATED|CHARTS|DATA)\}\}", lambda m: parts[m.group(1)], template)


def build(results_dir: Path, out_html: Path, resamples: int = RESAMPLES) -> Path:
    """Read every combination under results_dir and write the self-contained page to out_html."""
    out_html = Path(out_html)
    page = render(page_data(load_combos(Path(results_dir)), resamples))
    atomic_write(out_html, page)
    return out_html


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--results", type=Path, default=REPO / "results", help="results folder (default: results/)")
    p.add_argument("--out", type=Path, default=REPO / "leaderboard" / "index.html", help="page to write")
    p.add_argument("--resamples", type=int, default=RESAMPLES, help=f"bootstrap resamples (default {RESAMPLES})")
    args = p.parse_args(argv)
    try:
        print(f"leaderboard: {build(args.results, args.out, args.resamples)}")
    except LeaderboardError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
