"""Adapter against its base, task by task, with a paired bootstrap 95% interval.

    python -m benchmark.compare --results results-full
    python -m benchmark.compare --results results-full --models smollm2-135m-instruct \\
        --tasks ecuador_law_es_qa_visto ecuador_law_es_qa_nuevo instruct_es_gen --write-cards

Reads the results folders that ``benchmark/run_all.py`` writes (nothing is
recomputed, no model is loaded) and prints one Markdown table per model: for
each adapter, task and metric, the base's score, the adapter's score, the
difference and its paired bootstrap 95% interval (documents matched by
``doc_id`` and resampled together; chrF++ recomputed as a corpus score on every
resample; the same code as the leaderboard's "change against the base").

``--write-cards`` puts the table of each adapter into the ``## Evaluation``
section of its training card (``adapters/<model>/<adapter>/README.md``),
replacing the section if it is there.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from benchmark.registry import load_registry
from benchmark.resultsets import load_combos
from benchmark.stats import RESAMPLES, paired_delta

# task -> metrics reported (first = the one an adapter is expected to improve)
DEFAULT_TASKS = {
    "ecuador_law_es_qa_visto": ["hechos_recall", "chrf_pp", "cita_correcta", "cita_erronea"],
    "ecuador_law_es_qa_nuevo": ["hechos_recall", "chrf_pp", "cita_correcta", "cita_erronea"],
    "instruct_es_gen": ["chrf_pp", "rougeL", "spanish_rate"],
}
LOWER_IS_BETTER = {"cita_erronea"}
BEGIN, END = "<!-- evaluation:begin -->", "<!-- evaluation:end -->"


def _value(combo: dict, task: str, metric: str) -> float | None:
    value = (combo["data"]["results"].get(task) or {}).get(f"{metric},none")
    return value if isinstance(value, (int, float)) else None


def compare(results, models=None, tasks=None, resamples: int = RESAMPLES) -> dict[str, list[dict]]:
    """{model: [row]}, row = {adapter, task, metric, base, adapter_score, delta, lo, hi, n, verdict}.

    ``results`` is one results folder or a list of them (e.g. one per task set); each adapter is
    compared with the base of the same folder.
    """
    out: dict[str, list[dict]] = {}
    for folder in ([results] if isinstance(results, (str, Path)) else results):
        for model, rows in _compare_one(Path(folder), models, tasks, resamples).items():
            out.setdefault(model, []).extend(rows)
    return out


def _compare_one(results: Path, models, tasks, resamples) -> dict[str, list[dict]]:
    tasks = {t: DEFAULT_TASKS.get(t, ["chrf_pp"]) for t in tasks} if tasks else DEFAULT_TASKS
    combos = [c for c in load_combos(results) if c["status"] == "ok"]
    out: dict[str, list[dict]] = {}
    for model in sorted({c["model"] for c in combos}):
        if models and model not in models:
            continue
        base = next((c for c in combos if c["model"] == model and c["adapter"] == "base"), None)
        if base is None:
            continue
        for combo in (c for c in combos if c["model"] == model and c["adapter"] != "base"):
            for task, metrics in tasks.items():
                if task not in combo["data"]["results"] or task not in base["data"]["results"]:
                    continue
                for metric in metrics:
                    b, a = _value(base, task, metric), _value(combo, task, metric)
                    if a is None or b is None:
                        continue
                    d = paired_delta(base, combo, task, metric, resamples)
                    row = {"sample": combo["data"].get("benchmark", {}).get("sample", "unknown"),
                           "precision": combo["data"].get("benchmark", {}).get("precision", "unknown"),
                           "adapter": combo["adapter"], "task": task, "metric": metric, "base": b,
                           "adapter_score": a, "delta": d and d["delta"], "lo": d and d["lo"],
                           "hi": d and d["hi"], "n": d and d["n"]}
                    sign = -1 if metric in LOWER_IS_BETTER else 1
                    row["verdict"] = ("n/a" if d is None else "better" if sign * d["lo"] > 0 and sign * d["hi"] > 0
                                      else "worse" if sign * d["lo"] < 0 and sign * d["hi"] < 0 else "no clear change")
                    out.setdefault(model, []).append(row)
    return out


def markdown(rows: list[dict], adapter: str | None = None) -> str:
    lines = ["| adapter | task | metric | base | adapter | difference [95% CI] | n | verdict |",
             "|---|---|---|---:|---:|---|---:|---|"]
    for r in rows:
        if adapter and r["adapter"] != adapter:
            continue
        digits = 2 if r["metric"] in {"chrf_pp", "bleu"} else 3
        ci = ("n/a" if r["delta"] is None else
              f"{r['delta']:+.{digits}f} [{r['lo']:+.{digits}f}, {r['hi']:+.{digits}f}]")
        lines.append(f"| {r['adapter']} | {r['task']} | {r['metric']} | {r['base']:.{digits}f} | "
                     f"{r['adapter_score']:.{digits}f} | {ci} | {r['n'] or ''} | {r['verdict']} |")
    return "\n".join(lines)


def write_card(card: Path, section: str) -> None:
    text = card.read_text(encoding="utf-8") if card.is_file() else ""
    block = f"{BEGIN}\n## Evaluation\n\n{section}\n{END}\n"
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        text = head + block + rest.split(END, 1)[1].lstrip("\n")
    else:
        text = text.rstrip("\n") + "\n\n" + block
    card.write_text(text, encoding="utf-8")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--results", type=Path, nargs="+", default=[Path("results")],
                   help="results folder(s) of run_all (default: results)")
    p.add_argument("--models", nargs="+", help="registry model names (default: every model with a base row)")
    p.add_argument("--tasks", nargs="+", help=f"tasks (default: {' '.join(DEFAULT_TASKS)})")
    p.add_argument("--resamples", type=int, default=RESAMPLES, help=f"bootstrap resamples (default {RESAMPLES})")
    p.add_argument("--write-cards", action="store_true", help="write each table into the adapter's training card")
    p.add_argument("--command", default=None, help="the run_all command that produced --results, quoted in the cards")
    args = p.parse_args(argv)
    found = compare(args.results, args.models, args.tasks, args.resamples)
    if not found:
        print(f"error: no model in {' '.join(map(str, args.results))} has both a base and an adapter result; "
              "run benchmark/run_all.py with --adapters base <adapter> first", file=sys.stderr)
        return 2
    registry = load_registry()
    for model, rows in found.items():
        print(f"\n## {model}\n\n{markdown(rows)}")
        if args.write_cards:
            for adapter in sorted({r["adapter"] for r in rows}):
                card = registry.model(model).adapter(adapter).path / "README.md"
                folders = ", ".join(f"`{f}`" for f in args.results)
                mine = [r for r in rows if r["adapter"] == adapter]
                docs = "; ".join(sorted({r["sample"] for r in mine}))
                precision = ", ".join(sorted({r["precision"] for r in mine}))
                intro = (f"Against the base `{model}` on the test splits ({docs}; {precision}; results folders "
                         f"{folders}" + (f", produced by `{args.command}`" if args.command else "") + "). "
                         f"Paired bootstrap, {args.resamples} resamples over documents; `python -m benchmark.compare`.\n")
                write_card(card, intro + "\n" + markdown(rows, adapter) + "\n")
                print(f"wrote the evaluation into {card}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
