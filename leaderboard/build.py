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
from benchmark.results import atomic_write
from benchmark.resultsets import REQUIRED, ResultsFormatError, load_combos, read_samples  # noqa: F401 (the page's API)
from benchmark.stats import CORPUS_METRICS, RESAMPLES, SEED, _number, paired_delta  # noqa: F401

# Main metric of a task: the first of these found in its results -> (decimals shown, top of the chart scale).
MAIN_METRICS = {
    "hechos_recall": (3, 1.0),
    "acc": (3, 1.0),
    "prompt_level_strict_acc": (3, 1.0),
    "chrf_pp": (1, 100.0),
}
TEMPLATE = Path(__file__).with_name("template.html")
REPO = Path(__file__).resolve().parent.parent
LOG_KEYS = {"doc_id", "doc", "target", "arguments", "resps", "filtered_resps", "filter", "metrics",
            "doc_hash", "prompt_hash", "target_hash"}


# Reading results and the paired statistics live in the benchmark package; the page only renders them.
LeaderboardError = ResultsFormatError


def portable(value):
    """Paths of the machine that ran a combination, written so the page carries none: repository paths
    relative to the repository, the home folder as ``~`` (applied to every string, at any depth)."""
    if isinstance(value, dict):
        return {k: portable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [portable(v) for v in value]
    if isinstance(value, str):
        return value.replace(str(REPO) + "/", "").replace(str(Path.home()) + "/", "~/")
    return value


def main_metric(metrics: dict) -> tuple[str, str] | None:
    """(metric, key in lm-eval's results) of the first MAIN_METRICS entry present, e.g. ('acc', 'acc,none')."""
    for name in MAIN_METRICS:
        keys = [k for k in metrics if k.split(",")[0] == name]
        if keys:
            return name, (f"{name},none" if f"{name},none" in keys else keys[0])
    return None


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
        row["provenance"] = {"folder": portable(str(c["folder"])), "benchmark": portable(bench),
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
