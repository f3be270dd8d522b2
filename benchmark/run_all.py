"""Score every base+adapter combination of a suite on every task, then build the leaderboard.

    python benchmark/run_all.py                      # embedded suite, fixed stratified sample
    python benchmark/run_all.py --full               # whole test splits
    python benchmark/run_all.py --suite seed --precision 8bit --device cuda
    python benchmark/run_all.py --tasks belebele_spa_Latn --suite seed --adapters none
    python benchmark/run_all.py --include-path ~/my_tasks  # extra task folder, next to tasks/
    python benchmark/run_all.py --full --publish     # whole splits into leaderboard/results/ (commit them)

Each base model is loaded once (8-bit by default); its adapters are attached with
PEFT and switched between evaluations. Each combination decodes with its own
preset and template (``--preset`` forces one preset for all). Results go to
``<output-dir>/<model>/<adapter>/`` in lm-eval's schema with provenance added;
finished combinations whose inputs did not change are skipped, so an
interrupted run resumes where it stopped (``--force`` recomputes).

The page (``leaderboard/index.html`` by default) shows the published whole-split results
(``leaderboard/results/``) and this run's: a combination this run scored on the whole split replaces
its published row; one scored on a sample is compared with it document by document, and the summary
prints how many per-document scores it reproduced. ``--full --publish`` copies each combination into
``leaderboard/results/`` as it finishes and skips the ones published with the same inputs.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import time
import traceback
import uuid
from pathlib import Path

if __package__ in (None, ""):  # run as a script: python benchmark/run_all.py
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmark import results as res
from benchmark.registry import REPO, RegistryError, load_registry
from benchmark.published import STORE as PUBLISHED
from benchmark.published import publish, published_input_hash
from benchmark.tasks import resolve_tasks, stratified_sample, task_dirs, task_source_files

DEFAULT_OUTPUT = REPO / "results"
DEFAULT_SAMPLE = 4          # documents per leaf task in the default, fixed, stratified sample (24 per combination)
SAMPLE_MAX_GEN_TOKS = 128   # answers are capped at this many tokens in the default sample (not with --full)
# Default batch sizes. CPU: 64 is the fastest of 16/64/128 in 8-bit on 2 cores (Gemma-3-270M, instruct_es_ifeval,
# 512-token answers: 1.9x batch 16, 1.2x batch 128) and peaks at 3.5 GB, under the 8 GiB target (PERF.md,
# "What limits the figures", 9). GPU: not measured; 16 leaves room for a 7B model's KV cache in 8-bit on a 24 GB
# card. Log-likelihood batches are capped by the size of their logits (benchmark/harness.py).
CPU_BATCH_SIZE = 64
CUDA_BATCH_SIZE = 16
log = logging.getLogger("benchmark")


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"--limit takes a number of documents >= 1, got {text}; "
                                         "use --full for the whole test splits")
    return value


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--suite", default="embedded", help="suite from adapters/registry.yaml (default: embedded)")
    p.add_argument("--models", nargs="+", help="model names (default: every model of the suite)")
    p.add_argument("--adapters", nargs="+", default=["base", "instruct", "law", "merged"],
                   help="which combinations: base instruct law merged (default: all); 'none' = base only")
    p.add_argument("--tasks", nargs="+", help="task or group names: ours under tasks/ or stock lm-eval ones "
                   "(default: every task under tasks/ and the --include-path folders)")
    p.add_argument("--include-path", type=Path, action="append", default=[], metavar="DIR",
                   help="another folder of lm-eval task YAMLs, searched like tasks/ (repeatable)")
    p.add_argument("--limit", type=_positive, default=DEFAULT_SAMPLE, metavar="N",
                   help=f"documents per leaf task, a fixed stratified sample (default {DEFAULT_SAMPLE}); "
                        "--full for the whole test splits")
    p.add_argument("--full", action="store_true", help="evaluate the whole test splits")
    p.add_argument("--preset", help="decode every combination with this preset (name in presets/ or a path)")
    p.add_argument("--precision", choices=["8bit", "4bit", "bf16", "fp32"], default="8bit")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    p.add_argument("--batch-size", type=_positive, default=None,
                   help=f"documents generated together (default {CPU_BATCH_SIZE} on the CPU, the fastest size that "
                        f"stays under the memory target, see benchmark/PERF.md; {CUDA_BATCH_SIZE} on a GPU)")
    p.add_argument("--int8-kernels", choices=["fast", "stock"], default="fast",
                   help="8-bit on the CPU: 'fast' = the project's kernels for bitsandbytes' int8 matmul "
                        "(benchmark/int8_cpu.py: the same numbers, faster), 'stock' = bitsandbytes' own")
    p.add_argument("--max-gen-toks", type=int, default=None,
                   help=f"cap on generated tokens per answer (default {SAMPLE_MAX_GEN_TOKS} with the sample, "
                        "the task's own max_gen_toks with --full)")
    p.add_argument("--output-dir", type=Path, default=DEFAULT_OUTPUT)
    p.add_argument("--cache-dir", type=Path, default=None, help="prepared checkpoints (default $BENCH_CACHE)")
    p.add_argument("--force", action="store_true", help="recompute finished combinations")
    p.add_argument("--backend", choices=["hf", "vllm"], default="hf")
    p.add_argument("--tensor-parallel-size", type=int, default=1, help="vllm backend only")
    p.add_argument("--data-parallel-size", type=int, default=1, help="vllm backend only")
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--leaderboard", type=Path, default=REPO / "leaderboard" / "index.html",
                   help="page to write (default: leaderboard/index.html)")
    p.add_argument("--no-leaderboard", action="store_true", help="do not build the page")
    p.add_argument("--published", type=Path, default=PUBLISHED,
                   help="published whole-split results the page shows and this run is compared with "
                        "(default: leaderboard/results/)")
    p.add_argument("--publish", action="store_true",
                   help="with --full: copy each finished combination into --published (then commit it), and "
                        "skip combinations already published with the same inputs")
    args = p.parse_args(argv)
    if args.publish and not args.full:
        p.error("--publish needs --full: only whole test splits are published")
    if args.full:
        args.limit = 0
    if args.max_gen_toks is None and args.limit:
        args.max_gen_toks = SAMPLE_MAX_GEN_TOKS
    if args.adapters == ["none"]:
        args.adapters = ["base"]
    if args.batch_size is None:
        args.batch_size = default_batch_size(args.device)
    return args


def default_batch_size(device: str | None) -> int:
    """The batch size a run uses when none is given: measured per device (benchmark/PERF.md)."""
    return CPU_BATCH_SIZE if resolved_device(device) == "cpu" else CUDA_BATCH_SIZE


# ------------------------------------------------------------------ adapters ---

def resolved_device(device: str | None) -> str:
    """The device a run uses: the one asked for, else cuda when available, else cpu."""
    if device:
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def args_backend(lm) -> str:
    return "vllm" if type(lm).__name__ == "PresetVLLM" else "hf"


def attach(lm, model_entry, entry, base_folder: Path):
    """Load an adapter into the (possibly already PEFT-wrapped) model and activate it."""
    from peft import PeftModel

    from benchmark.registry import check_adapter

    folder = check_adapter(entry, model_entry, base_folder)
    if args_backend(lm) == "vllm":
        lm.use_adapter(entry.name, folder)
        return
    try:
        if hasattr(lm.model, "peft_config"):
            if entry.name not in lm.model.peft_config:
                lm.model.load_adapter(str(folder), adapter_name=entry.name)
        else:
            lm._model = PeftModel.from_pretrained(lm.model, str(folder), adapter_name=entry.name)
            lm._model.eval()
    except Exception as exc:
        if hasattr(lm.model, "peft_config") and entry.name in lm.model.peft_config:
            lm.model.delete_adapter(entry.name)
        raise RuntimeError(f"adapter '{model_entry.name}/{entry.name}' at {folder} cannot be loaded: "
                           f"{type(exc).__name__}: {str(exc)[:300]}") from None
    lm.use_adapter(entry.name)


# ------------------------------------------------------------------ main ---

def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        registry = load_registry()
        models = registry.select(args.suite, args.models)
        res.check_writable(args.output_dir)
        details = route_library_logs(args.output_dir)
        with res.RunLock(args.output_dir):
            status = run(args, registry, models)
        print(f"library messages (lm-eval, transformers, bitsandbytes, warnings): {details}")
        return status
    except (RegistryError, res.ResultsError, ValueError, OSError) as exc:  # OSError: e.g. the disk filled up mid-run
        print(f"error: {exc}", file=sys.stderr)
        return 2


LIBRARY_LOGGERS = ("lm_eval", "lm-eval", "transformers", "datasets", "bitsandbytes", "accelerate", "peft",
                   "py.warnings")


def route_library_logs(output_dir: Path) -> Path:
    """Send the libraries' messages and Python warnings to ``<output-dir>/run_all.log``, not the terminal.

    The terminal keeps the progress bars, our own messages and the summary; lm-eval's per-task
    notices, transformers' FutureWarnings and bitsandbytes' cast warning go to the file.
    """
    import warnings

    Path(output_dir).mkdir(parents=True, exist_ok=True)
    path = Path(output_dir) / "run_all.log"
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    logging.captureWarnings(True)
    warnings.simplefilter("default")   # each distinct warning once, into the file
    import lm_eval.utils

    lm_eval.utils._LOGGING_CONFIGURED = True   # lm-eval would add a terminal handler on its first evaluate()
    for name in LIBRARY_LOGGERS:
        logger = logging.getLogger(name)
        for old in list(logger.handlers):
            logger.removeHandler(old)
        logger.addHandler(handler)
        logger.propagate = False
        logger.setLevel(logging.INFO if name != "py.warnings" else logging.WARNING)
    return path


def run(args, registry, models) -> int:
    from tqdm.auto import tqdm

    from benchmark.presets import find_preset, load_preset
    from benchmark.templates import load_template

    started = time.time()
    dirs = task_dirs(args.include_path)
    tm, task_names, leaves, problems = resolve_tasks(args.tasks, dirs)
    for problem in problems:
        log.error("error: %s", problem)
    samples = None
    if args.limit:
        samples = {name: stratified_sample(list(task.eval_docs), args.limit, seed=0) for name, task in leaves.items()}
    sample_note = "full test split" if not samples else f"fixed stratified sample, {args.limit} per task"
    task_files = task_source_files(tm, [*task_names, *leaves])

    plan = []
    for m in models:
        for a in args.adapters:
            if a != "base" and a not in m.adapters:
                continue
            plan.append((m, None if a == "base" else a))
    rows, failures = [], []
    device = resolved_device(args.device)
    bar = tqdm(total=len(plan), desc="combinations", unit="combo")
    for model_entry in models:
        combos = [a for (m, a) in plan if m is model_entry]
        hashes, pending = {}, []
        template = load_template(model_entry.template)
        for adapter in combos:
            preset_path = (find_preset(args.preset).path if args.preset else
                           (model_entry.adapter(adapter).preset if adapter else model_entry.preset))
            adapter_path = model_entry.adapter(adapter).path if adapter else None
            key = {"model": model_entry.raw, "adapter": adapter,
                   "adapter_hash": res.adapter_hash(adapter_path) if adapter_path and adapter_path.exists() else None,
                   "template_hash": res.hash_paths([model_entry.template]), "preset_hash": res.hash_paths([preset_path]),
                   "tasks": task_names, "task_files": res.hash_paths(task_files), "samples": samples,
                   "precision": args.precision, "max_gen_toks": args.max_gen_toks, "seed": args.seed,
                   # 8-bit answers depend on which rows share a batch, and kernels differ by device.
                   "batch_size": args.batch_size, "device": device,
                   "libraries": res.library_versions(), "backend": args.backend}
            input_hash = res.sha256_bytes(json.dumps(key, sort_keys=True, default=str).encode())
            hashes[adapter] = (input_hash, key, preset_path)
            folder = res.combo_dir(args.output_dir, model_entry.name, adapter)
            done, why = res.is_complete(folder, input_hash)
            if (args.publish and not args.force
                    and published_input_hash(model_entry.name, adapter or "base", args.published) == input_hash):
                bar.update(1)
                rows.append((model_entry.name, adapter or "base", "cached"))
                log.info("%s/%s: published with the same inputs; skipped", model_entry.name, adapter or "base")
            elif done and not args.force:
                bar.update(1)
                rows.append((model_entry.name, adapter or "base", "cached"))
            else:
                if why not in ("not run",):
                    log.info("%s/%s: recomputing (%s)", model_entry.name, adapter or "base", why)
                pending.append(adapter)
        # Refuse combinations whose adapter is not there before loading the base (a 7B load takes minutes).
        for adapter in [a for a in pending if a]:
            why = model_entry.adapter(adapter).missing_reason()
            if why:
                res.mark_failed(res.combo_dir(args.output_dir, model_entry.name, adapter), hashes[adapter][0], why)
                failures.append((model_entry.name, adapter, why))
                pending.remove(adapter)
                bar.update(1)
        if not pending:
            continue
        try:
            lm, base_folder = _load_lm(args, model_entry, template, [a for a in pending if a])
        except Exception as exc:
            for adapter in pending:
                folder = res.combo_dir(args.output_dir, model_entry.name, adapter)
                res.mark_failed(folder, hashes[adapter][0], f"base model failed to load: {exc}")
                failures.append((model_entry.name, adapter or "base", str(exc)))
                bar.update(1)
            continue
        for adapter in pending:
            input_hash, key, preset_path = hashes[adapter]
            folder = res.combo_dir(args.output_dir, model_entry.name, adapter)
            name = f"{model_entry.name}/{adapter or 'base'}"
            bar.set_postfix_str(name)
            try:
                if adapter:
                    attach(lm, model_entry, model_entry.adapter(adapter), base_folder)
                else:
                    lm.use_adapter(None)
                preset = load_preset(preset_path)
                lm.set_preset(preset, template.stop_strings)
                lm.preset_request_kwargs()   # a preset this backend cannot run fails here, before any work
                summary = _evaluate(args, lm, tm, task_names, samples, folder, input_hash, key,
                                    model_entry, adapter, template, preset, base_folder, sample_note)
                rows.append((model_entry.name, adapter or "base", summary))
                if args.publish:
                    try:
                        log.info("%s: published to %s", name, publish(folder, args.published))
                    except Exception as exc:   # the results are written; only the published copy is missing
                        log.error("%s: not published: %s", name, exc)
                        failures.append((model_entry.name, adapter or "base", f"not published: {exc}"))
            except Exception as exc:  # one combination failing must not stop the others
                log.error("%s failed: %s", name, exc)
                log.debug(traceback.format_exc())
                res.mark_failed(folder, input_hash, f"{type(exc).__name__}: {exc}")
                failures.append((model_entry.name, adapter or "base", str(exc)))
            bar.update(1)
        del lm
    bar.close()
    _print_summary(args.output_dir, plan, failures, time.time() - started, problems,
                   cached=sum(1 for row in rows if row[2] == "cached"))
    if not args.no_leaderboard:
        from leaderboard.build import build
        from leaderboard.build import reproduction_lines
        try:
            build(args.output_dir, args.leaderboard, published=args.published)
            print(f"leaderboard: {args.leaderboard}")
            for line in reproduction_lines(build.last):
                print(line)
        except Exception as exc:  # the results are written; only the page is missing
            print(f"error: leaderboard not built: {exc}", file=sys.stderr)
            return 1
    return 1 if failures or problems else 0


def _int8_kernels(lm, args) -> str | None:
    """Which int8 matmul kernels ran: "fast" (benchmark/int8_cpu.py) or "stock" (bitsandbytes'); None off the CPU path."""
    if args.precision != "8bit" or args.backend != "hf" or str(lm.device) != "cpu":
        return None
    from benchmark import int8_cpu

    return "fast" if int8_cpu.installed() else "stock"


def _load_lm(args, model_entry, template, adapters=()):
    """The base model, loaded once per run for all its combinations, wrapped for lm-eval."""
    from benchmark.presets import load_preset

    start = time.time()
    if args.backend == "vllm":
        lm, folder = _load_vllm(args, model_entry, template, adapters)
    else:
        from benchmark.harness import PresetLM
        from benchmark.loading import load_for_eval

        model, tokenizer, folder = load_for_eval(model_entry, args.precision, args.cache_dir, args.device,
                                                 int8_kernels=args.int8_kernels)
        lm = PresetLM(model, tokenizer, load_preset(model_entry.preset), template.stop_strings,
                      batch_size=args.batch_size)
    # Every combination evaluated on this load records the same id: the base is loaded once per run.
    lm.load_id = uuid.uuid4().hex
    lm.load_seconds = round(time.time() - start, 1)
    log.info("%s: base model loaded from %s (%.1f s)", model_entry.name, folder, lm.load_seconds)
    return lm, folder


def _load_vllm(args, model_entry, template, adapters):
    try:
        from benchmark.vllm_backend import PresetVLLM
    except ImportError as exc:
        raise RuntimeError(f"the vllm backend needs vLLM in this environment ({exc}); install it in its own "
                           "environment with `bash scripts/setup.sh --vllm` and run .venv-vllm/bin/python") from None
    from benchmark.loading import prepare
    from benchmark.presets import load_preset

    folder = prepare(model_entry, args.cache_dir, precisions=("fp32",))["fp32"]
    ranks = []
    for name in adapters:
        config = model_entry.adapter(name).path / "adapter_config.json"
        ranks.append(int(json.loads(config.read_text()).get("r", 16)))
    lm = PresetVLLM(folder, load_preset(model_entry.preset), template.stop_strings, precision=args.precision,
                    batch_size=args.batch_size, seed=args.seed, max_lora_rank=max(ranks, default=None),
                    tensor_parallel_size=args.tensor_parallel_size, data_parallel_size=args.data_parallel_size,
                    device=resolved_device(args.device))
    return lm, folder


def _precision_label(lm, requested: str) -> str:
    if args_backend(lm) == "vllm":
        return requested
    from benchmark.loading import effective_precision

    model = lm.model.get_base_model() if hasattr(lm.model, "get_base_model") else lm.model
    return effective_precision(model, requested)


def _repo_relative(path: Path) -> Path:
    return path.relative_to(REPO) if path.is_relative_to(REPO) else path


def _evaluate(args, lm, tm, task_names, samples, folder, input_hash, key, model_entry, adapter, template, preset,
              base_folder, sample_note) -> dict:
    import lm_eval
    from lm_eval.utils import handle_non_serializable

    folder.mkdir(parents=True, exist_ok=True)
    # lm-eval's response cache keys on the request only, not the model: one cache per input hash, so a
    # changed adapter, preset or library never reuses old answers, and --force recomputes from scratch.
    for partial in folder.glob(".*_*.json*"):   # temporary files of a write that was killed half-way
        partial.unlink()
    cache = folder / "lm_cache" / input_hash[:16]
    for old in (folder / "lm_cache").glob("*"):
        if old != cache or args.force:
            shutil.rmtree(old) if old.is_dir() else old.unlink()
    lm.truncated_prompts = 0
    lm.generated_tokens = 0
    lm.max_gen_toks_cap = args.max_gen_toks
    start = time.time()
    out = lm_eval.simple_evaluate(
        model=lm, tasks=task_names, task_manager=tm, samples=samples, log_samples=True,
        apply_chat_template=True, use_cache=str(cache / "cache"),
        random_seed=args.seed, numpy_random_seed=args.seed, torch_random_seed=args.seed, fewshot_random_seed=args.seed,
        bootstrap_iters=100)
    seconds = time.time() - start
    adapter_entry = model_entry.adapter(adapter) if adapter else None
    out["benchmark"] = {
        "schema": res.SCHEMA_VERSION, "model": model_entry.name, "display_name": model_entry.display_name,
        "adapter": adapter or "base", "adapter_location": adapter_entry.location if adapter_entry else None,
        "adapter_hash": key["adapter_hash"], "registry_entry": model_entry.raw,
        "template": str(_repo_relative(model_entry.template)), "template_hash": key["template_hash"],
        "preset": preset.name, "preset_hash": key["preset_hash"], "preset_mapping": preset.provenance(),
        "stop_strings": template.stop_strings, "precision": _precision_label(lm, args.precision),
        "precision_requested": args.precision, "device": str(lm.device),
        "batch_size": args.batch_size, "max_gen_toks": args.max_gen_toks,
        "int8_kernels": _int8_kernels(lm, args),
        "host": res.host_info(lm.device),
        "checkpoint": str(base_folder), "base_load": {"id": lm.load_id, "seconds": lm.load_seconds},
        "seed": args.seed, "libraries": key["libraries"], "sample": sample_note,
        "samples": samples, "truncated_prompts": lm.truncated_prompts, "generated_tokens": lm.generated_tokens,
        "seconds": round(seconds, 1), "input_hash": input_hash,
    }
    stamp = time.strftime("%Y-%m-%dT%H-%M-%S")
    written = []
    for task, task_samples in (out.pop("samples", None) or {}).items():
        path = folder / f"samples_{task}_{stamp}.jsonl"
        res.atomic_write(path, "".join(json.dumps(s, default=handle_non_serializable, ensure_ascii=False) + "\n"
                                       for s in task_samples))
        written.append(path)
    path = folder / f"results_{stamp}.json"
    res.atomic_write(path, json.dumps(out, default=handle_non_serializable, ensure_ascii=False, indent=1))
    written.append(path)
    for old in folder.glob("*_*.json*"):
        if old not in written and (old.name.startswith("results_") or old.name.startswith("samples_")):
            old.unlink()
    summary = {t: {k: v for k, v in m.items() if isinstance(v, (int, float))} for t, m in out["results"].items()}
    res.mark_done(folder, input_hash, written, {"seconds": round(seconds, 1), "results": summary})
    return summary


def _print_summary(output_dir, plan, failures, seconds, problems=(), cached=0):
    print(f"\n{len(plan)} combination(s), {cached} kept from an earlier run, {len(failures)} failed, "
          f"{seconds / 60:.1f} min")
    header = f"{'model':<24} {'adapter':<9} {'min':>6}  main metrics"
    print(header + "\n" + "-" * len(header))
    eval_seconds, loads = 0.0, {}
    for model_entry, adapter in plan:
        folder = res.combo_dir(output_dir, model_entry.name, adapter)
        data = res.load_results(folder) if (folder / "done.json").exists() else None
        if data is None:
            print(f"{model_entry.name:<24} {adapter or 'base':<9} {'':>6}  FAILED")
            continue
        record = data.get("benchmark", {})
        eval_seconds += record.get("seconds") or 0.0
        load = record.get("base_load") or {}
        if load.get("id") is not None:
            loads[load["id"]] = load.get("seconds") or 0.0
        minutes = f"{record['seconds'] / 60:.1f}" if record.get("seconds") is not None else "?"
        cells = []
        for task, metrics in sorted(data["results"].items()):
            main_metric = next((k for k in ("hechos_recall,none", "acc,none", "chrf_pp,none",
                                            "prompt_level_strict_acc,none") if k in metrics), None)
            if main_metric and task in data.get("groups", data["results"]):
                cells.append(f"{task}={metrics[main_metric]:.3f}")
        print(f"{model_entry.name:<24} {adapter or 'base':<9} {minutes:>6}  {' '.join(cells)}")
    if eval_seconds:
        # Across resumed runs too: each combination keeps the time it took when it was computed.
        print(f"evaluation time of these combinations, kept ones included: {eval_seconds / 60:.1f} min, "
              f"plus {sum(loads.values()) / 60:.1f} min loading base models ({len(loads)} load(s))")
    for model, adapter, error in failures:
        print(f"FAILED {model}/{adapter}: {error}")
    for problem in problems:
        print(f"ERROR {problem}")


if __name__ == "__main__":
    sys.exit(main())
