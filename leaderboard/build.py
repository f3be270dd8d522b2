"""Build the static leaderboard page from the published results and a results folder (never calls a model).

    python -m leaderboard.build                                   # published results + results/
    python -m leaderboard.build --results results-full --out leaderboard/index.html
    python -m leaderboard.build --published-only                  # the committed page

or, from Python (benchmark/run_all.py does this after a run)::

    from leaderboard.build import build
    build(Path("results"), Path("leaderboard/index.html"))

Two inputs. The **published** results (``leaderboard/results/``, see :mod:`benchmark.published`): the
whole-split scores of every embedded combination, committed. A **results folder** of ``run_all``
(``<results>/<model>/<adapter|base>/{results_*.json, samples_<task>_*.jsonl, done.json | failed.json}``):
a row scored on the whole split replaces the published row (marked "recomputed"); a row scored on a
sample is compared document by document with the published row (the "Reproduction" section) and shown as
a row only where nothing is published. The output is one self-contained HTML file (data inlined as JSON,
inline CSS/JS/SVG, nothing fetched), so it opens from disk.

Every task in the results becomes a column with its main metric (the first of ``MAIN_METRICS`` it has,
else its first metric) and every metric lm-eval reports is listed with its direction (lm-eval's
``higher_is_better``). Each adapter cell shows the paired difference from the same model's base with a
bootstrap 95% interval (``benchmark.stats.paired_delta``, scipy), and each column its minimum detectable
effect. Tasks whose YAML ``metadata.breakdown`` names document fields are broken down by them.
"""

from __future__ import annotations

import argparse
import datetime
import html
import json
import math
import re
import sys
from pathlib import Path

from benchmark import textmetrics
from benchmark.results import atomic_write
from benchmark.resultsets import REQUIRED, ResultsFormatError, load_combos, read_samples  # noqa: F401 (the page's API)
from benchmark.stats import CORPUS_METRICS, RESAMPLES, SEED, _number, paired_delta  # noqa: F401

# Main metric of a task: the first of these found in its results; any other task shows its first metric.
MAIN_METRICS = ("hechos_recall", "acc", "prompt_level_strict_acc", "chrf_pp")
TEMPLATE = Path(__file__).with_name("template.html")
REFERENCE = Path(__file__).with_name("reference.yaml")
REPO = Path(__file__).resolve().parent.parent
LOG_KEYS = {"doc_id", "doc", "target", "arguments", "resps", "filtered_resps", "filter", "metrics",
            "doc_hash", "prompt_hash", "target_hash"}
# Settings that decide a combination's answers: a sample run is compared with the published row on these.
SETTINGS = ("precision", "template_hash", "preset_hash", "adapter_hash", "batch_size", "device", "max_gen_toks")
FULL = "full test split"


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


NOT_METRICS = {"alias", "sample_len", "sample_count", "samples"}   # counts lm-eval writes beside the metrics


def metric_names(metrics: dict, better: dict | None = None) -> list[str]:
    """The metrics of one task's results ('acc,none' -> 'acc'; stderr and counts left out), in the order of
    lm-eval's ``higher_is_better`` for the task when it has one, else in the results' order."""
    names = []
    for key, value in metrics.items():
        name = key.split(",")[0]
        if "_stderr" in name or name in NOT_METRICS or name in names or _number(value) is None:
            continue
        names.append(name)
    if better:
        ordered = [n for n in better if n in names]
        return ordered + [n for n in names if n not in ordered]
    return names


def metric_key(metrics: dict, name: str) -> str | None:
    keys = [k for k in metrics if k.split(",")[0] == name]
    return (f"{name},none" if f"{name},none" in keys else keys[0]) if keys else None


def main_metric(metrics: dict, better: dict | None = None) -> tuple[str, str] | None:
    """(metric, key in lm-eval's results) of the task's main metric, e.g. ('acc', 'acc,none')."""
    names = metric_names(metrics, better)
    name = next((m for m in MAIN_METRICS if m in names), names[0] if names else None)
    return (name, metric_key(metrics, name)) if name else None


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


def _is_full(combo: dict) -> bool:
    return combo["status"] == "ok" and combo["data"]["benchmark"].get("sample") == FULL \
        and not combo["data"]["benchmark"].get("samples")


def _task_info(ok: list[dict]) -> dict:
    """Every task of the shown rows: main metric, every metric with its direction, decimals, group."""
    tasks = {}
    for c in ok:
        data = c["data"]
        for task, metrics in data["results"].items():
            better = (data.get("higher_is_better") or {}).get(task) or {}
            found = main_metric(metrics, better)
            if not found:
                continue
            info = tasks.setdefault(task, {"name": task, "metric": found[0], "metrics": {},
                                           "group": bool((data.get("group_subtasks") or {}).get(task)),
                                           "subtasks": list((data.get("group_subtasks") or {}).get(task) or []),
                                           "breakdown": [], "values": []})
            for name in metric_names(metrics, better):
                info["metrics"].setdefault(name, {"name": name, "higher_is_better": better.get(name), "values": []})
                info["metrics"][name]["values"].append(_number(metrics[metric_key(metrics, name)]))
            fields = (((data.get("configs") or {}).get(task) or {}).get("metadata") or {}).get("breakdown") or []
            info["breakdown"] = [str(f) for f in fields] if isinstance(fields, list) else []
    for info in tasks.values():
        for m in info["metrics"].values():
            values = [v for v in m.pop("values") if v is not None]
            m["decimals"] = 3 if values and max(abs(v) for v in values) <= 1.0 else 1
        info.pop("values")
        info["decimals"] = info["metrics"][info["metric"]]["decimals"] if info["metric"] in info["metrics"] else 3
        info["metrics"] = list(info["metrics"].values())
    return tasks


def reproduction(user: dict, published: dict) -> dict:
    """A run compared with the published row, document by document (answers and every per-document score)."""
    a, b = user["data"]["benchmark"], published["data"]["benchmark"]
    settings = {k: [b.get(k), a.get(k)] for k in SETTINGS if a.get(k) != b.get(k)}
    libs_a, libs_b = a.get("libraries") or {}, b.get("libraries") or {}
    settings.update({f"libraries.{k}": [libs_b.get(k), libs_a.get(k)]
                     for k in sorted(set(libs_a) | set(libs_b)) if libs_a.get(k) != libs_b.get(k)})
    documents = scores = same_docs = same_scores = 0
    differ = []
    for task, samples in sorted(user["samples"].items()):
        theirs = {json.dumps(s["doc_id"]): s for s in published["samples"].get(task, [])}
        for s in samples:
            p = theirs.get(json.dumps(s["doc_id"]))
            if p is None:
                continue
            names = [n for n in (s.get("metrics") or []) if n in s]
            changed = {n: [_plain(p.get(n)), _plain(s.get(n))] for n in names if _plain(p.get(n)) != _plain(s.get(n))}
            documents += 1
            scores += len(names)
            same_scores += len(names) - len(changed)
            answer_changed = _flatten(p.get("filtered_resps")) != _flatten(s.get("filtered_resps"))
            if changed or answer_changed:
                differ.append({"task": task, "doc_id": s["doc_id"], "scores": changed, "answer_changed": answer_changed})
            else:
                same_docs += 1
    return {"model": user["model"], "adapter": user["adapter"], "sample": a.get("sample"),
            "documents": documents, "documents_reproduced": same_docs, "scores": scores,
            "scores_reproduced": same_scores, "differ": differ, "settings_differ": settings}


def _plain(value):
    """A per-document score as compared: corpus-metric pairs by their prediction, numbers rounded to 12 places."""
    if isinstance(value, (list, tuple)) and len(value) == 2 and all(isinstance(v, str) for v in value):
        return value[1]
    if isinstance(value, float):
        return round(value, 12)
    return value


def _doc_values(samples: list[dict], metric: str) -> list[tuple[dict, object]]:
    return [(s.get("doc") or {}, s.get(metric)) for s in samples if s.get(metric) is not None]


def _mean(values: list) -> float | None:
    if values and all(isinstance(v, (list, tuple)) and len(v) == 2 for v in values):
        return textmetrics.corpus_chrfpp([str(p) for _, p in values], [str(r) for r, _ in values])
    numbers = [float(v) for v in values if _number(float(v) if isinstance(v, bool) else v) is not None]
    return sum(numbers) / len(numbers) if numbers else None


def breakdown(task: dict, samples: list[dict]) -> dict:
    """{field: {value: [score, n]}}: the task's main metric by each ``metadata.breakdown`` field of the document.

    A list field with a list-valued metric of the same length (IFEval's ``instruction_id_list`` and its
    ``inst_level_*`` scores) is broken down element by element, on the first such metric.
    """
    out = {}
    for field in task["breakdown"]:
        groups: dict[str, list] = {}
        names = list(dict.fromkeys(n for s in samples for n in (s.get("metrics") or []) if isinstance(n, str)))
        listed = next((n for n in names if any(
            isinstance((s.get("doc") or {}).get(field), list) and isinstance(s.get(n), list)
            and len(s[n]) == len(s["doc"][field]) for s in samples)), None)
        for doc, value in _doc_values(samples, listed or task["metric"]):
            key = doc.get(field)
            if listed and isinstance(key, list) and isinstance(value, list) and len(key) == len(value):
                for k, v in zip(key, value):
                    groups.setdefault(str(k), []).append(v)
            elif key is not None:
                groups.setdefault(json.dumps(key, ensure_ascii=False) if isinstance(key, (list, dict)) else str(key),
                                  []).append(value)
        if groups:
            out[field] = {"metric": listed or task["metric"],
                          "values": {k: [_mean(v), len(v)] for k, v in sorted(groups.items())}}
    return out


def load_reference(path: Path = REFERENCE) -> dict | None:
    """Reference rows reported elsewhere (the 2023 thesis), shown apart from the measured rows."""
    import yaml

    if not Path(path).is_file():
        return None
    data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    for i, row in enumerate(data.get("rows") or []):
        for field in ("model", "adapter", "value"):
            if field not in row:
                raise ResultsFormatError(f"{path}: rows[{i}] lacks field '{field}'")
    return data


def page_data(combos: list[dict], resamples: int = RESAMPLES, published: list[dict] = (),
              reference: dict | None = None) -> dict:
    """Rows, columns, statistics, breakdowns and samples of the page, from a run's and the published combos."""
    mine = {(c["model"], c["adapter"]): c for c in combos}
    theirs = {(c["model"], c["adapter"]): c for c in published}
    shown, reproduced = [], []
    for key in sorted(set(mine) | set(theirs)):
        user, pub = mine.get(key), theirs.get(key)
        if user is not None and (pub is None or _is_full(user)):
            shown.append({**user, "origin": "recomputed" if pub is not None else "this run"})
            continue
        shown.append({**pub, "origin": "published"})
        if user is not None and user["status"] == "ok":
            reproduced.append(reproduction(user, pub))
        elif user is not None:
            reproduced.append({"model": user["model"], "adapter": user["adapter"], "failed": user.get("error")})
    shown.sort(key=lambda c: (c["model"], c["adapter"] != "base", c["adapter"]))
    ok = [c for c in shown if c["status"] == "ok"]
    tasks = _task_info(ok)
    bases = {c["model"]: c for c in ok if c["adapter"] == "base"}
    rows, samples, breakdowns = [], {}, {}
    for i, c in enumerate(shown):
        row = {"id": i, "model": c["model"], "adapter": c["adapter"], "status": c["status"], "origin": c["origin"]}
        if c["status"] == "failed":
            rows.append({**row, "error": c["error"]})
            continue
        data, bench = c["data"], c["data"]["benchmark"]
        row.update({k: str(bench[k]) for k in REQUIRED[2:]}, display_name=str(bench.get("display_name") or ""),
                   batch_size=bench.get("batch_size"), device=str(bench.get("device") or ""),
                   minutes=round(bench["seconds"] / 60, 1) if _number(bench.get("seconds")) is not None else None)
        row["provenance"] = {"origin": c["origin"], "folder": portable(str(c["folder"])), "benchmark": portable(bench),
                             **{k: data[k] for k in ("versions", "n-samples", "date", "git_hash") if k in data}}
        cells, base = {}, bases.get(c["model"]) if c["adapter"] != "base" else None
        for name, task in tasks.items():
            metrics = data["results"].get(name) or {}
            if metric_key(metrics, task["metric"]) is None:
                continue
            n = (data.get("n-samples") or {}).get(name, {})
            cell = {"n": n.get("effective") if isinstance(n, dict) else None, "metrics": {}}
            for m in task["metrics"]:
                k = metric_key(metrics, m["name"])
                if k is None or _number(metrics[k]) is None:
                    continue
                delta = paired_delta(base, c, name, m["name"], resamples) if base else None
                cell["metrics"][m["name"]] = {"value": _number(metrics[k]), "delta": delta,
                                              "stderr": _number(metrics.get(k.replace(",", "_stderr,", 1)))}
            main = cell["metrics"].get(task["metric"])
            if main is None:
                continue
            cell.update(value=main["value"], stderr=main["stderr"], delta=main["delta"])
            cells[name] = cell
        row["cells"] = cells
        rows.append(row)
        samples[i] = {task: [sample_view(s) for s in logged] for task, logged in c["samples"].items()}
        for name, task in tasks.items():
            if task["breakdown"] and c["samples"].get(name):
                found = breakdown(task, c["samples"][name])
                if found:
                    breakdowns.setdefault(name, {})[i] = found
    for name, task in tasks.items():
        mdes = sorted(r["cells"][name]["delta"]["mde"] for r in rows
                      if r.get("cells", {}).get(name, {}).get("delta"))
        task["mde"] = mdes[len(mdes) // 2] if mdes else None
    return {"tasks": [tasks[t] for t in sorted(tasks)], "rows": rows, "samples": samples, "resamples": resamples,
            "seed": SEED, "breakdowns": breakdowns, "reproduction": reproduced, "reference": reference,
            "texts": _intern_texts(samples)}


def _intern_texts(samples: dict) -> list[str]:
    """Prompts and references are the same for every combination of a model: each is stored once in
    ``texts`` and a sample view holds its index (the page resolves them on load)."""
    texts, index = [], {}
    for views in samples.values():
        for listed in views.values():
            for view in listed:
                for field in ("prompt", "target"):
                    text = view[field]
                    if text not in index:
                        index[text] = len(texts)
                        texts.append(text)
                    view[field] = index[text]
    return texts


# ------------------------------------------------------------------ charts (server-side SVG) ---

def _scale_top(task: dict, values: list[float]) -> float:
    return max([1.0 if task["decimals"] == 3 else 100.0] + values)


def bar_chart(task: dict, rows: list[dict]) -> str:
    """Horizontal bars of one task's main metric per combination, ± stderr; every label escaped."""
    bars = [(f"{r['model']} / {r['adapter']}", r["cells"][task["name"]]) for r in rows
            if r["status"] == "ok" and task["name"] in r["cells"]]
    top = _scale_top(task, [c["value"] for _, c in bars])
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


def delta_chart(task: dict, rows: list[dict]) -> str:
    """Each adapter's difference from its base on the task's main metric, with its 95% interval, around 0."""
    points = [(f"{r['model']} / {r['adapter']}", r["cells"][task["name"]]["delta"]) for r in rows
              if r["status"] == "ok" and (r["cells"].get(task["name"]) or {}).get("delta")]
    if not points:
        return ""
    reach = max(max(abs(d["lo"]), abs(d["hi"]), abs(d["delta"])) for _, d in points) or 1.0
    label_w, plot_w, h = 230, 300, 20
    x = lambda v: label_w + plot_w / 2 + (plot_w / 2 - 8) * v / reach   # noqa: E731
    dec = task["decimals"]
    out = [f'<figure class="chart delta-chart"><figcaption>{html.escape(task["name"])} '
           f'<span class="metric">(Δ {html.escape(task["metric"])} against the base, 95% interval)</span></figcaption>'
           f'<svg xmlns="http://www.w3.org/2000/svg" width="{label_w + plot_w + 110}" height="{h * len(points) + 8}" '
           f'role="img" aria-label="{html.escape(task["name"])} differences">'
           f'<line x1="{x(0):.1f}" x2="{x(0):.1f}" y1="0" y2="{h * len(points) + 8}" class="zero"/>']
    for i, (label, d) in enumerate(points):
        y = 4 + i * h + h / 2
        cls = "up" if d["lo"] > 0 else ("down" if d["hi"] < 0 else "flat")
        short = label if len(label) <= 34 else label[:33] + "…"
        out.append(f'<text x="{label_w - 6}" y="{y + 4:.1f}" text-anchor="end">{html.escape(short)}</text>'
                   f'<line x1="{x(d["lo"]):.1f}" x2="{x(d["hi"]):.1f}" y1="{y:.1f}" y2="{y:.1f}" class="ci {cls}"/>'
                   f'<circle cx="{x(d["delta"]):.1f}" cy="{y:.1f}" r="4" class="pt {cls}"><title>{html.escape(label)}: '
                   f'{d["delta"]:+.{dec}f} [{d["lo"]:+.{dec}f}, {d["hi"]:+.{dec}f}]</title></circle>'
                   f'<text x="{label_w + plot_w + 4}" y="{y + 4:.1f}">{d["delta"]:+.{dec}f}</text>')
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
    deltas = "".join(delta_chart(t, data["rows"]) for t in data["tasks"]) or "<p>No adapter row with a base yet.</p>"
    parts = {"GENERATED": html.escape(datetime.datetime.now().strftime("%Y-%m-%d %H:%M")),
             "CHARTS": charts, "DELTAS": deltas, "DATA": _script_json(data)}
    # one pass: text inserted for one placeholder is never scanned for another
    return re.sub(r"\{\{(GENERATED|CHARTS|DELTAS|DATA)\}\}", lambda m: parts[m.group(1)], template)


def build(results_dir: Path | None, out_html: Path, resamples: int = RESAMPLES, published: Path | None = None,
          reference: Path | None = REFERENCE) -> Path:
    """Read the published results (a folder, or None for none) and results_dir's, and write the page.

    Returns the page's path; ``build.last`` keeps the page data (the run summary prints its reproduction).
    """
    from benchmark.published import load_published

    out_html = Path(out_html)
    combos = load_combos(Path(results_dir)) if results_dir is not None else []
    data = page_data(combos, resamples, load_published(published) if published else [],
                     load_reference(reference) if reference else None)
    atomic_write(out_html, render(data))
    build.last = data
    return out_html


def reproduction_lines(data: dict, limit: int = 10) -> list[str]:
    """The reproduction figures as text (run_all's summary and the command line print them)."""
    lines = []
    for r in data.get("reproduction") or []:
        name = f"{r['model']}/{r['adapter']}"
        if r.get("failed"):
            lines.append(f"{name}: this run failed ({r['failed']}); the published row is shown")
            continue
        lines.append(f"{name}: {r['scores_reproduced']} of {r['scores']} per-document scores and "
                     f"{r['documents_reproduced']} of {r['documents']} documents reproduced exactly the published "
                     f"whole-split run" + (f"; settings differ: {', '.join(r['settings_differ'])}"
                                           if r["settings_differ"] else ""))
        for d in r["differ"][:limit]:
            what = ", ".join(f"{k} {v[0]!r:.40} -> {v[1]!r:.40}" for k, v in d["scores"].items()) or "same scores"
            lines.append(f"  differs: {d['task']} doc {d['doc_id']}: {what}"
                         + ("; answer changed" if d["answer_changed"] else ""))
        if len(r["differ"]) > limit:
            lines.append(f"  ... and {len(r['differ']) - limit} more (listed on the page)")
    return lines


def main(argv=None) -> int:
    from benchmark.published import STORE

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--results", type=Path, default=REPO / "results", help="results folder (default: results/)")
    p.add_argument("--published", type=Path, default=STORE,
                   help="published results (default: leaderboard/results/)")
    p.add_argument("--published-only", action="store_true", help="build from the published results alone")
    p.add_argument("--out", type=Path, default=REPO / "leaderboard" / "index.html", help="page to write")
    p.add_argument("--resamples", type=int, default=RESAMPLES, help=f"bootstrap resamples (default {RESAMPLES})")
    args = p.parse_args(argv)
    try:
        results = None if args.published_only else args.results
        if results is not None and not Path(results).is_dir() and Path(args.published).is_dir():
            print(f"note: no results folder {results}; building from the published results alone")
            results = None
        out = build(results, args.out, args.resamples, published=args.published)
        print(f"leaderboard: {out}")
        for line in reproduction_lines(build.last):
            print(line)
    except LeaderboardError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
