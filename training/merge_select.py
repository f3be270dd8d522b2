"""Choose how to merge a model's ``instruct`` and ``law`` adapters, by measurement.

    python -m training.merge_select --model smollm2-135m-instruct --limit 40
    python -m training.merge_select --model gemma-3-270m --combinations linear cat ties dare_linear svd --apply

Each PEFT combination (``training.merge``: ``linear``, ``cat``, ``ties``, ``dare_linear``, ``svd`` by
default) is built into ``--work-dir`` and scored by ``benchmark/run_all.py`` (8-bit, the merged
adapter's own template and preset, the same fixed stratified sample of test documents as every other
run with that ``--limit``) on each parent's tasks; the base, ``instruct`` and ``law`` are scored on the
same documents, once. For each candidate and parent p:

    kept_p = (merged - base) / (parent_p - base)      on parent p's task and metric

with paired bootstrap 95% intervals of each difference from ``benchmark.stats``. A parent with several
tasks counts its smallest ``kept``. The choice is the candidate with the largest
``min(kept_instruct, kept_law)`` (the issue's bar: at least 0.5 of each parent's gain); where a parent
gains nothing (its interval reaches 0), ``kept`` is not defined and the report says so.

The report (``<work-dir>/selection.json``, and a table on stdout) lists every candidate; ``--apply``
rebuilds the winner into the registry's ``merged`` folder with its reproduce command in the card.
Runs are resumable: run_all keeps each finished combination, so an interrupted selection continues.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

DEFAULT_COMBINATIONS = ("linear", "cat", "ties", "dare_linear", "svd")
DEFAULT_TASKS = {
    "law": ["ecuador_law_es_qa_visto:hechos_recall"],
    "instruct": ["instruct_es_ifeval:prompt_level_strict_acc", "instruct_es_gen:chrf_pp"],
}


def _task_metric(spec: str) -> tuple[str, str]:
    task, sep, metric = spec.partition(":")
    if not sep or not task or not metric:
        raise argparse.ArgumentTypeError(f"'{spec}': expected TASK:METRIC, e.g. ecuador_law_es_qa_visto:hechos_recall")
    return task, metric


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="registry model name")
    p.add_argument("--combinations", nargs="+", default=list(DEFAULT_COMBINATIONS),
                   help=f"PEFT combinations to try (default: {' '.join(DEFAULT_COMBINATIONS)})")
    p.add_argument("--density", type=float, default=0.5, help="ties / dare_* / magnitude_prune: share kept")
    p.add_argument("--svd-rank", type=int, default=None, help="svd: rank (default: the larger input rank)")
    p.add_argument("--weights", type=float, nargs=2, default=[1.0, 1.0], metavar=("INSTRUCT", "LAW"))
    p.add_argument("--law-tasks", nargs="+", type=_task_metric, default=[_task_metric(s) for s in DEFAULT_TASKS["law"]],
                   metavar="TASK:METRIC", help="the law adapter's tasks and metrics (default: %(default)s)")
    p.add_argument("--instruct-tasks", nargs="+", type=_task_metric,
                   default=[_task_metric(s) for s in DEFAULT_TASKS["instruct"]], metavar="TASK:METRIC",
                   help="the instruct adapter's tasks and metrics")
    p.add_argument("--limit", type=int, default=40, help="documents per leaf task (run_all's fixed sample); 0 = whole splits")
    p.add_argument("--precision", default="8bit")
    p.add_argument("--batch-size", type=int, default=None, help="run_all's --batch-size (default: run_all's)")
    p.add_argument("--max-gen-toks", type=int, default=None, help="answer cap (default: run_all's)")
    p.add_argument("--include-path", type=Path, action="append", default=[], help="more lm-eval task folders")
    p.add_argument("--work-dir", type=Path, default=Path("runs/merge_select"))
    p.add_argument("--cache-dir", type=Path, default=None)
    p.add_argument("--resamples", type=int, default=2000, help="bootstrap resamples per interval")
    p.add_argument("--apply", action="store_true", help="write the winner into the registry's merged folder")
    return p.parse_args(argv)


def _candidate_registry(model_entry, registry_path: Path, out: Path, merged: Path) -> Path:
    """The registry with a suite of this model alone, its parents as registered and ``merged`` = the candidate."""
    import yaml

    raw = yaml.safe_load(registry_path.read_text(encoding="utf-8"))
    entry = dict(raw["models"][model_entry.name])
    adapters = {}
    for name, a in entry["adapters"].items():
        a = dict(a)
        for key in ("path", "preset"):   # absolute, since the file is not beside the repository's
            if a.get(key):
                a[key] = str(model_entry.adapter(name).path if key == "path" else model_entry.adapter(name).preset)
        adapters[name] = a
    adapters["merged"] = {**adapters.get("merged", {}), "path": str(merged)}
    adapters["merged"].pop("hub_id", None)
    entry["adapters"] = adapters
    data = {"suites": {"merge_select": [model_entry.name]}, "models": {**raw["models"], model_entry.name: entry}}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return out


def _run_all(args, registry: Path, output: Path, adapters: list[str], tasks: list[str]) -> None:
    from benchmark import run_all

    argv = ["--suite", "merge_select", "--adapters", *adapters, "--tasks", *tasks, "--precision", args.precision,
            "--output-dir", str(output), "--no-leaderboard"]
    if args.batch_size:
        argv += ["--batch-size", str(args.batch_size)]
    argv += ["--full"] if args.limit == 0 else ["--limit", str(args.limit)]
    if args.max_gen_toks:
        argv += ["--max-gen-toks", str(args.max_gen_toks)]
    if args.cache_dir:
        argv += ["--cache-dir", str(args.cache_dir)]
    for path in args.include_path:
        argv += ["--include-path", str(path)]
    before = os.environ.get("BENCH_REGISTRY")
    os.environ["BENCH_REGISTRY"] = str(registry)
    try:
        rc = run_all.main(argv)
    finally:
        if before is None:
            os.environ.pop("BENCH_REGISTRY", None)
        else:
            os.environ["BENCH_REGISTRY"] = before
    if rc != 0:
        raise SystemExit(f"benchmark/run_all.py failed (exit {rc}) for {adapters} in {output}; see its log above")


def kept_share(delta_merged: dict | None, delta_parent: dict | None) -> float | None:
    """(merged - base) / (parent - base), or None where the parent gains nothing measurable."""
    if not delta_merged or not delta_parent or delta_parent["lo"] <= 0 or delta_parent["delta"] <= 0:
        return None
    return delta_merged["delta"] / delta_parent["delta"]


def select(candidates: list[dict]) -> dict | None:
    """The candidate with the largest smallest share kept; None when no share is defined."""
    scored = [c for c in candidates if c["min_kept"] is not None]
    return max(scored, key=lambda c: (c["min_kept"], c["combination"] == "linear")) if scored else None


def main(argv=None) -> int:
    args = parse_args(argv)
    from benchmark.registry import load_registry
    from benchmark.resultsets import load_combo
    from benchmark.stats import paired_delta
    from training.merge import COMBINATIONS, MergeRefused, merge

    unknown = sorted(set(args.combinations) - set(COMBINATIONS))
    if unknown:
        raise SystemExit(f"unknown combination(s) {', '.join(unknown)}; choose from {', '.join(COMBINATIONS)}")
    registry = load_registry()
    registry_path, entry = registry.path, registry.model(args.model)
    for parent in ("instruct", "law"):
        a = entry.adapter(parent)
        if a.path is None or not a.path.is_dir():
            raise SystemExit(f"model '{args.model}': adapter '{parent}' has no local folder ({a.path}); train it first")
    work = args.work_dir / args.model
    parents = {"law": args.law_tasks, "instruct": args.instruct_tasks}
    tasks = sorted({t for specs in parents.values() for t, _ in specs})

    # the base and both parents, once
    parents_out = work / "results" / "parents"
    _run_all(args, _candidate_registry(entry, registry_path, work / "registry_parents.yaml", entry.adapter("law").path),
             parents_out, ["base", "instruct", "law"], tasks)
    combo = {name: load_combo(parents_out / args.model / name) for name in ("base", "instruct", "law")}
    missing = [n for n, c in combo.items() if not c or c.get("status") != "ok"]
    if missing:
        raise SystemExit(f"run_all did not finish {', '.join(missing)} in {parents_out}")

    def delta(other, task, metric):
        return paired_delta(combo["base"], other, task, metric, resamples=args.resamples)

    gains = {p: {f"{t}:{m}": delta(combo[p], t, m) for t, m in specs} for p, specs in parents.items()}
    candidates = []
    for combination in args.combinations:
        folder = work / "candidates" / combination
        try:
            merge(args.model, combination, tuple(args.weights), args.density, folder, args.cache_dir,
                  instruct=entry.adapter("instruct").path, law=entry.adapter("law").path, svd_rank=args.svd_rank)
        except MergeRefused as exc:   # linear, ties, dare_*: equal ranks only
            candidates.append({"combination": combination, "refused": str(exc), "deltas": {}, "kept": {},
                               "min_kept": None})
            print(json.dumps({"combination": combination, "refused": str(exc)}), flush=True)
            continue
        out = work / "results" / combination
        _run_all(args, _candidate_registry(entry, registry_path, work / f"registry_{combination}.yaml", folder),
                 out, ["merged"], tasks)
        merged = load_combo(out / args.model / "merged")
        if not merged or merged.get("status") != "ok":
            raise SystemExit(f"run_all did not finish the '{combination}' candidate in {out}")
        row = {"combination": combination, "folder": str(folder), "deltas": {}, "kept": {}}
        for p, specs in parents.items():
            shares = []
            for t, m in specs:
                d = delta(merged, t, m)
                row["deltas"][f"{t}:{m}"] = d
                shares.append(kept_share(d, gains[p][f"{t}:{m}"]))
            row["kept"][p] = None if any(s is None for s in shares) else min(shares)
        row["min_kept"] = None if any(v is None for v in row["kept"].values()) else min(row["kept"].values())
        candidates.append(row)
        print(json.dumps({"combination": combination, "kept": row["kept"]}), flush=True)

    best = select(candidates)
    report = {"model": args.model, "limit": args.limit, "precision": args.precision, "weights": args.weights,
              "density": args.density, "svd_rank": args.svd_rank, "parent_gains": gains, "candidates": candidates,
              "chosen": best["combination"] if best else None,
              "command": "python -m training.merge_select " + " ".join(sys.argv[1:] if argv is None else argv)}
    from benchmark.results import atomic_write

    atomic_write(work / "selection.json", json.dumps(report, indent=1, ensure_ascii=False))
    print(render(report))
    if args.apply:
        if best is None:
            raise SystemExit("no candidate can be chosen: a parent gains nothing measurable on its task (see above)")
        out = merge(args.model, best["combination"], tuple(args.weights), args.density, None, args.cache_dir,
                    svd_rank=args.svd_rank)
        print(f"merged adapter ({best['combination']}) written to {out}")
    return 0


def _fmt(d: dict | None) -> str:
    return "n/a" if not d else f"{d['delta']:+.3f} [{d['lo']:+.3f}, {d['hi']:+.3f}]"


def render(report: dict) -> str:
    lines = [f"merge selection for {report['model']} ({report['precision']}, "
             f"{'whole splits' if not report['limit'] else str(report['limit']) + ' documents per leaf task'})", ""]
    lines.append("parent gains over the base (paired bootstrap 95%):")
    for p, by in report["parent_gains"].items():
        lines += [f"  {p:9s} {k}: {_fmt(d)}" for k, d in by.items()]
    lines += ["", "candidates: merged - base, and the share of each parent's gain kept:"]
    for c in report["candidates"]:
        if c.get("refused"):
            lines.append(f"  {c['combination']:16s} refused by PEFT: {c['refused']}")
            continue
        kept = ", ".join(f"{p} {'n/a' if v is None else f'{v:.2f}'}" for p, v in c["kept"].items())
        lines.append(f"  {c['combination']:16s} {kept}")
        lines += [f"      {k}: {_fmt(d)}" for k, d in c["deltas"].items()]
    lines += ["", f"chosen: {report['chosen'] or 'none (a parent gains nothing measurable)'}"]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
