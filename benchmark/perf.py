"""Performance figures: the harness against bare transformers, stock lm-eval and the hardware.

    python -m benchmark.perf                                   # every section, default sizes
    python -m benchmark.perf --sections generate --model gemma-3-270m --batch-sizes 16 32 64
    python -m benchmark.perf --sections train --train-steps 20
    python -m benchmark.perf --sections matrix --matrix-limit 20
    python -m benchmark.perf --sections profile --model gemma-3-270m --precisions 8bit --batch-sizes 16 --profile-adapter law
    python -m benchmark.perf --sections llamacpp --model gemma-3-270m --batch-sizes 16

Each section runs its comparison pair by pair, on the same inputs, and updates
``benchmark/perf.json`` (raw figures, machine, versions, the command of each
section) and ``benchmark/PERF.md`` (rendered from perf.json, so sections can be
rerun one at a time):

generate   matmul peak (1024x1024, fp32 and bf16); a bare batched ``model.generate``
           loop against the same prompts through run_all's ``PresetLM`` (greedy, N new
           tokens, per precision and batch size); share of the matmul peak
           (tok/s x 2 x parameters / peak, and counting the prompt tokens too);
           ``--variants``: static KV cache, torch.compile, one thread, at the last batch size.
train      the trainer on a recipe against TRL's SFTTrainer defaults on the same data,
           LoRA config and learning rate (batch 8 without accumulation, activation
           checkpointing on, random batches, max_length 1024, every position through the LM head as
           TRL does off Triton), and against itself with that LM head (what the
           completion-only head buys): tokens trained per second (padding excluded), loss
           per step, peak memory. Each run is a fresh process.
matrix     ``benchmark/run_all.py`` on a matrix against one stock ``lm_eval`` command per
           combination, with the same prepared 8-bit checkpoint, adapter, documents
           (``--samples``), chat template, greedy decoding, answer cap and batch size;
           wall times, ratio, whether every metric is identical, peak memory; then
           run_all again with nothing changed (the cache).
llamacpp   llama.cpp (llama-cpp-python, built for this CPU) on the model's GGUF file and its Q8_0
           requantization: one stream and batched greedy decoding of the same prompts, new tokens/s.
profile    torch.profiler over run_all's harness generating answers (``--profile-adapter`` attached, the
           first of ``--precisions``, the last of ``--batch-sizes``): where the time goes, by kind of
           work (bitsandbytes' int8 kernels, dtype casts, float matmuls, LoRA layers by PEFT's frames,
           attention, the rest) and outside the torch ops (Python: the decoding loop, stop strings, padding).
precision  run_all on whole test splits in 8-bit and in bf16 (results folders are reused
           when their inputs did not change): scores side by side. The speed cost of
           8-bit is in the generate section.

Not a test: it prints and records measured numbers.
"""


from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shlex
import sys
import time
from pathlib import Path

OUT_DIR = Path(__file__).resolve().parent


def matmul_peak(dtype, n=1024, seconds=2.0) -> float:
    import torch
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    for _ in range(3):
        a @ b
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        a @ b
        count += 1
    return 2 * n ** 3 * count / (time.perf_counter() - start) / 1e9


def prompts_for(entry, n):
    from benchmark import lawdata
    from benchmark.templates import load_template
    template = load_template(entry.template)
    rows = [r for r in lawdata.load_split("test") if r["conocimiento"] == "visto"][:n]
    return [template.render([{"role": "user", "content": r["pregunta"]}], add_generation_prompt=True) for r in rows]


def bare_generate(model, tokenizer, prompts, batch_size, new_tokens, outputs: list | None = None,
                  **generate_kwargs) -> tuple[float, int]:
    """Greedy ``model.generate`` over ``prompts`` in batches: (generated tokens per second, tokens).

    ``outputs``, when given, receives each prompt's generated ids; ``generate_kwargs`` go to ``generate``.
    """
    import torch
    generated, start = 0, time.perf_counter()
    for i in range(0, len(prompts), batch_size):
        enc = tokenizer(prompts[i:i + batch_size], return_tensors="pt", padding=True).to(model.device)
        with torch.no_grad():
            out = model.generate(**enc, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False,
                                 pad_token_id=tokenizer.pad_token_id, **generate_kwargs)
        generated += (out.shape[1] - enc.input_ids.shape[1]) * out.shape[0]
        if outputs is not None:
            outputs.extend(out[:, enc.input_ids.shape[1]:].tolist())
    return generated / (time.perf_counter() - start), generated


VARIANTS = {
    "static-cache": "transformers' static KV cache (`cache_implementation=\"static\"`)",
    "compile": "static KV cache + `torch.compile` of the forward (transformers' `CompileConfig`, allowed on the CPU)",
    "threads-1": "`torch.set_num_threads(1)` instead of one thread per core",
    "stock-int8": "bitsandbytes' own int8 matmul kernels instead of `benchmark/int8_cpu.py`'s (8-bit only)",
}


def generate_variant(model, tokenizer, prompts, batch_size, new_tokens, variant: str, baseline: list) -> dict:
    """One change against the default ``generate`` path: its speed, and how many answers it changes."""
    import torch

    kwargs, threads = {}, torch.get_num_threads()
    if variant in ("static-cache", "compile"):
        kwargs["cache_implementation"] = "static"
    if variant == "compile":
        if getattr(model, "hf_quantizer", None) is not None and not model.hf_quantizer.is_compileable:
            return {"variant": variant, "refused": "transformers does not compile this quantization"}
        from transformers import CompileConfig
        config = CompileConfig()
        config._compile_all_devices = True   # transformers compiles on CUDA/XPU only unless told
        kwargs["compile_config"] = config
    if variant == "threads-1":
        torch.set_num_threads(1)
    from benchmark import int8_cpu

    fast = int8_cpu.installed()
    if variant == "stock-int8":
        if getattr(model, "hf_quantizer", None) is None or not fast:
            return {"variant": variant, "refused": "not an 8-bit model on the project's int8 kernels"}
        int8_cpu.uninstall()
    try:
        bare_generate(model, tokenizer, prompts[:batch_size], batch_size, 2, **kwargs)   # warm-up / compile
        outputs = []
        rate, _ = bare_generate(model, tokenizer, prompts, batch_size, new_tokens, outputs, **kwargs)
    finally:
        torch.set_num_threads(threads)
        if fast:
            int8_cpu.install()
    out = {"variant": variant, "tok_s": round(rate, 1), "answers": len(outputs),
           "answers_changed": sum(a != b for a, b in zip(outputs, baseline))}
    if variant == "stock-int8":
        # The first run of a batch size also pays for growing its buffers: measure the default path again,
        # after the variant, so that both sides of this comparison run warm.
        again, _ = bare_generate(model, tokenizer, prompts, batch_size, new_tokens)
        out["baseline_again_tok_s"] = round(again, 1)
    return out


def harness_generate(model, tokenizer, template, prompts, batch_size, new_tokens) -> tuple[float, int]:
    from lm_eval.api.instance import Instance

    from benchmark.harness import PresetLM
    from benchmark.presets import find_preset

    lm = PresetLM(model, tokenizer, find_preset("Deterministic"), [], batch_size=batch_size)
    requests = [Instance(request_type="generate_until", doc={}, idx=i,
                         arguments=(p, {"until": [], "max_gen_toks": new_tokens, "min_new_tokens": new_tokens}))
                for i, p in enumerate(prompts)]
    start = time.perf_counter()
    lm.generate_until(requests, disable_tqdm=True)
    return lm.generated_tokens / (time.perf_counter() - start), lm.generated_tokens


REPO = OUT_DIR.parent
# SFTConfig's defaults for what changes speed and memory (the recipe's learning rate is kept, so that the
# loss curves compare; it does not change the work per step)
TRL_DEFAULTS = ["--activation_checkpointing", "true", "--train_sampling_strategy", "random",
                "--per_device_train_batch_size", "8", "--gradient_accumulation_steps", "1", "--max_length", "1024",
                "--lm_head_completion_only", "false"]


def child(module: str, args: list[str], log: Path) -> dict:
    """Run ``python -m module args`` in a fresh process; its wall time, peak RSS and exit status."""
    import subprocess
    stats = log.with_suffix(".peak.json")
    with open(log, "w", encoding="utf-8") as fh:
        proc = subprocess.run([sys.executable, "-m", "benchmark._peakrss", str(stats), module, *args],
                              cwd=REPO, stdout=fh, stderr=subprocess.STDOUT)
    if not stats.is_file() or proc.returncode:
        tail = log.read_text(encoding="utf-8", errors="replace")[-3000:]
        raise RuntimeError(f"`python -m {module} {' '.join(args)}` failed (exit {proc.returncode}); "
                           f"log {log}:\n{tail}")
    return json.loads(stats.read_text())


# ------------------------------------------------------------------ generate

def merge_generate(old: dict | None, new: dict) -> dict:
    """A generate run replaces the rows (precision and batch size) and variants it measured and keeps the others, when both
    runs used the same prompts and answer length (so the table stays comparable); each row keeps the
    command, CPU and matmul peak it was measured with."""
    for row in new["rows"] + new["variants"]:
        row.update(command=new["command"], cpu=new["cpu"], matmul_peak_gflops=new["matmul_peak_gflops"])
    if not old or (old["prompts"], old["new_tokens"]) != (new["prompts"], new["new_tokens"]):
        return new
    measured = {(r["precision"], r["batch_size"]) for r in new["rows"]}
    measured_variants = {(v["precision"], v["batch_size"], v["variant"]) for v in new["variants"]}
    kept = [dict(r) for r in old["rows"] if (r["precision"], r["batch_size"]) not in measured]
    kept_variants = [dict(v) for v in old.get("variants", [])
                     if (v["precision"], v["batch_size"], v["variant"]) not in measured_variants]
    for row in kept + kept_variants:
        row.setdefault("command", old["command"])
        row.setdefault("cpu", old.get("cpu"))
        row.setdefault("matmul_peak_gflops", old.get("matmul_peak_gflops"))
    order = {p: i for i, p in enumerate(("8bit", "4bit", "bf16", "fp32"))}
    rows = sorted(kept + new["rows"], key=lambda r: (order.get(r["precision"], 9), r["batch_size"]))
    variants = sorted(kept_variants + new["variants"], key=lambda r: (order.get(r["precision"], 9), r["batch_size"]))
    return {**new, "rows": rows, "variants": variants}


def section_generate(args, peaks) -> dict:
    from benchmark.loading import load_for_eval
    from benchmark.registry import load_registry
    from benchmark.templates import load_template

    entry = load_registry().model(args.model)
    prompts = prompts_for(entry, args.prompts)
    template = load_template(entry.template)
    rows, variants = [], []
    for precision in args.precisions:
        model, tokenizer, _ = load_for_eval(entry, precision)
        params = sum(t.numel() for t in model.parameters())
        if not rows:   # the prompts' own tokens (no padding): the model runs them too, before the first new token
            prompt_tokens = sum(len(ids) for ids in tokenizer(prompts).input_ids)
        peak = peaks["bf16" if precision == "bf16" else "fp32"]
        for bs in args.batch_sizes:
            baseline = []
            bare, _ = bare_generate(model, tokenizer, prompts, bs, args.new_tokens, baseline)
            harness, _ = harness_generate(model, tokenizer, template, prompts, bs, args.new_tokens)
            row = {"precision": precision, "batch_size": bs, "bare_tok_s": round(bare, 1),
                   "harness_tok_s": round(harness, 1), "harness_over_bare": round(harness / bare, 3),
                   "peak_share": round(bare * 2 * params / 1e9 / peak, 4), "parameters": params,
                   # prompt + generated tokens through the model per second (greedy answers are exactly new_tokens)
                   "processed_peak_share": round(bare * (1 + prompt_tokens / (len(prompts) * args.new_tokens))
                                                 * 2 * params / 1e9 / peak, 4)}
            rows.append(row)
            print(json.dumps(row), flush=True)
        for name in args.variants:   # at the last batch size, against its default-path baseline
            v = {"precision": precision, "batch_size": bs, "baseline_tok_s": round(bare, 1),
                 **generate_variant(model, tokenizer, prompts, bs, args.new_tokens, name, baseline)}
            variants.append(v)
            print(json.dumps(v), flush=True)
        del model
    return {"model": args.model, "prompts": len(prompts), "new_tokens": args.new_tokens, "rows": rows,
            "variants": variants, "prompt_tokens": prompt_tokens, "cpu": cpu_description()}


# ------------------------------------------------------------------ llama.cpp
LLAMA_CPP_HINT = ("the llamacpp section needs llama-cpp-python (PyPI ships it as source only): "
                  "`bash scripts/setup.sh --llama-cpp` builds it for this CPU (about 10 minutes on 2 cores)")


def q8_gguf(source: Path, out: Path) -> Path:
    """``source`` (the model's GGUF file) requantized to Q8_0 by llama.cpp's own quantizer, once."""
    import llama_cpp

    if out.is_file():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = llama_cpp.LLAMA_FTYPE_MOSTLY_Q8_0
    params.allow_requantize = True
    tmp = out.with_suffix(".tmp")
    rc = llama_cpp.llama_model_quantize(str(source).encode(), str(tmp).encode(), params)
    if rc != 0:
        raise RuntimeError(f"llama.cpp could not requantize {source} to Q8_0 (status {rc})")
    os.replace(tmp, out)
    return out


def _greedy(logits_ptr, n_vocab: int) -> int:
    import numpy as np
    return int(np.ctypeslib.as_array(logits_ptr, shape=(n_vocab,)).argmax())


def llamacpp_single(llm, prompts: list[list[int]], new_tokens: int) -> tuple[float, list]:
    """One stream: each prompt, then ``new_tokens`` greedy tokens (end-of-text not honoured, like the
    bare transformers loop's ``min_new_tokens``). (new tokens per second, the answers' ids)."""
    import llama_cpp

    ctx, n_vocab, answers = llm._ctx.ctx, llm.n_vocab(), []
    start = time.perf_counter()
    for toks in prompts:
        llm.reset()
        llama_cpp.llama_memory_clear(llama_cpp.llama_get_memory(ctx), True)
        llm.eval(toks)
        out = []
        for _ in range(new_tokens):
            nxt = _greedy(llama_cpp.llama_get_logits_ith(ctx, -1), n_vocab)
            out.append(nxt)
            llm.eval([nxt])
        answers.append(out)
    return len(prompts) * new_tokens / (time.perf_counter() - start), answers


def llamacpp_batched(llm, prompts: list[list[int]], new_tokens: int, batch_size: int) -> tuple[float, list]:
    """llama.cpp's batched decoding (what its server does for parallel requests): ``batch_size``
    sequences share each decode call, one token per sequence per step, as in llama.cpp's
    ``examples/batched``. (new tokens per second, the answers' ids)."""
    import llama_cpp

    longest = max(len(p) for p in prompts)
    # The high-level Llama object keeps one sequence per context: a context of our own holds batch_size.
    params = llama_cpp.llama_context_default_params()
    params.n_ctx = batch_size * (longest + new_tokens + 8)
    params.n_batch = params.n_ubatch = max(longest, batch_size)
    params.n_seq_max = batch_size
    params.kv_unified = True
    params.n_threads = params.n_threads_batch = llm.n_threads
    ctx = llama_cpp.llama_init_from_model(llm._model.model, params)
    if not ctx:
        raise RuntimeError(f"llama.cpp could not create a context for {batch_size} sequences")
    n_vocab, answers = llm.n_vocab(), []
    batch = llama_cpp.llama_batch_init(max(longest, batch_size), 0, batch_size)

    def add(token, pos, seq, logits):
        i = batch.n_tokens
        batch.token[i], batch.pos[i], batch.n_seq_id[i], batch.logits[i] = token, pos, 1, logits
        batch.seq_id[i][0] = seq
        batch.n_tokens += 1

    def decode():
        rc = llama_cpp.llama_decode(ctx, batch)
        if rc != 0:
            raise RuntimeError(f"llama_decode failed (status {rc}) with {batch.n_tokens} tokens of {batch_size} sequences")

    start = time.perf_counter()
    try:
        for first in range(0, len(prompts), batch_size):
            group = prompts[first:first + batch_size]
            llama_cpp.llama_memory_clear(llama_cpp.llama_get_memory(ctx), True)
            nxt, outs = [], [[] for _ in group]
            for seq, toks in enumerate(group):   # each prompt's prefill; the logits of its last token
                batch.n_tokens = 0
                for pos, t in enumerate(toks):
                    add(t, pos, seq, pos == len(toks) - 1)
                decode()
                nxt.append(_greedy(llama_cpp.llama_get_logits_ith(ctx, batch.n_tokens - 1), n_vocab))
            for step in range(new_tokens):
                batch.n_tokens = 0
                for seq, toks in enumerate(group):
                    outs[seq].append(nxt[seq])
                    add(nxt[seq], len(toks) + step, seq, True)
                if step == new_tokens - 1:
                    break
                decode()
                nxt = [_greedy(llama_cpp.llama_get_logits_ith(ctx, i), n_vocab) for i in range(len(group))]
            answers.extend(outs)
    finally:
        llama_cpp.llama_batch_free(batch)
        llama_cpp.llama_free(ctx)
    return len(prompts) * new_tokens / (time.perf_counter() - start), answers


def section_llamacpp(args) -> dict:
    """llama.cpp (llama-cpp-python) on the model's own GGUF file and on its Q8_0 requantization, one
    stream and batched, on the generate section's prompts: the CPU anchor for the harness's tok/s."""
    try:
        import llama_cpp
    except ImportError:
        raise SystemExit(LLAMA_CPP_HINT) from None
    from benchmark.loading import default_cache_dir, locate_gguf
    from benchmark.registry import load_registry

    entry = load_registry().model(args.model)
    if entry.source.get("kind") != "pypi_gguf":
        raise SystemExit(f"model '{args.model}' has no GGUF file (source kind {entry.source.get('kind')!r})")
    cache = args.cache_dir or default_cache_dir()
    original = locate_gguf(entry, cache)
    files = {"as shipped": original,
             "Q8_0": q8_gguf(original, cache / "gguf" / f"{entry.name}-Q8_0.gguf")}
    texts = prompts_for(entry, args.prompts)
    threads = os.cpu_count()
    bs = args.batch_sizes[-1]
    rows = []
    for label, path in files.items():
        llm = llama_cpp.Llama(model_path=str(path), n_ctx=bs * 1024, n_batch=1024, n_ubatch=512, n_seq_max=bs,
                              n_threads=threads, n_threads_batch=threads, verbose=False)
        prompts = [llm.tokenize(t.encode(), add_bos=False, special=True) for t in texts]
        llamacpp_single(llm, prompts[:1], 2)   # warm-up
        single, single_out = llamacpp_single(llm, prompts, args.new_tokens)
        batched, batched_out = llamacpp_batched(llm, prompts, args.new_tokens, bs)
        row = {"file": path.name, "quant": label, "threads": threads, "single_tok_s": round(single, 1),
               "batch_size": bs, "batched_tok_s": round(batched, 1),
               "batched_answers_as_single": sum(a == b for a, b in zip(single_out, batched_out))}
        rows.append(row)
        print(json.dumps(row), flush=True)
        del llm
    return {"model": args.model, "prompts": len(texts), "new_tokens": args.new_tokens, "rows": rows,
            "llama_cpp_python": llama_cpp.__version__, "cpu": cpu_description(),
            "llama_cpp_build": llama_cpp.llama_print_system_info().decode(errors="replace").strip()}


# ------------------------------------------------------------------ profile

LORA_RANGE = "LoRA branch"
PYTHON = "outside the torch ops (Python: decoding loop, stop strings, padding, module calls)"

# Kinds of work, by the op's name or the ranges and frames above it (first match wins).
PROFILE_KINDS = (
    ("LoRA layers (PEFT)", lambda name, above: LORA_RANGE in above),
    ("bitsandbytes int8 matmul (quantize, int8 mm, outliers, dequantize)", lambda name, above:
     name.startswith("bitsandbytes") or name == "MatMul8bitLt" or "int_mm" in name
     or any(f == "MatMul8bitLt" or f.startswith("bitsandbytes") or "bitsandbytes/" in f for f in above)),
    ("dtype casts", lambda name, above: name in {"aten::to", "aten::_to_copy", "aten::copy_", "aten::type_as"}),
    ("float matmuls", lambda name, above: name in {"aten::mm", "aten::addmm", "aten::bmm", "aten::matmul",
                                                   "aten::linear", "aten::baddbmm"}),
    ("attention", lambda name, above: "scaled_dot_product" in name or "softmax" in name),
    ("indexing, concatenation, sorting", lambda name, above: any(k in name for k in (
        "cat", "index", "sort", "gather", "scatter", "slice", "select", "where", "pad", "nonzero", "masked"))),
)


def classify(name: str, above: list[str]) -> str:
    """The kind of work of a profiler event, from its name and the names of the events above it."""
    if ".py(" in name or name.startswith(("<built-in", "nn.Module:")) or name == LORA_RANGE:
        return PYTHON
    return next((kind for kind, match in PROFILE_KINDS if match(name, above)), "other ops")


def _mark_lora_branches(model) -> list:
    """record_function ranges around PEFT's lora_A / lora_B calls, so their ops can be told from the base's."""
    import torch

    handles = []
    for name, module in model.named_modules():
        if name.rsplit(".", 2)[-2:-1] and name.rsplit(".", 2)[-2] in ("lora_A", "lora_B"):
            def enter(mod, args):
                mod._profile_range = torch.profiler.record_function(LORA_RANGE)
                mod._profile_range.__enter__()

            def leave(mod, args, output):
                mod._profile_range.__exit__(None, None, None)

            handles += [module.register_forward_pre_hook(enter), module.register_forward_hook(leave)]
    return handles


def section_profile(args) -> dict:
    """Where the harness's generation time goes: torch.profiler, self CPU time by kind of work."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    from benchmark.loading import load_for_eval
    from benchmark.registry import load_registry
    from benchmark.templates import load_template

    entry = load_registry().model(args.model)
    prompts = prompts_for(entry, args.prompts)
    template = load_template(entry.template)
    precision, bs = args.precisions[0], args.batch_sizes[-1]
    model, tokenizer, _ = load_for_eval(entry, precision, args.cache_dir, int8_kernels=args.int8_kernels)
    if args.profile_adapter:
        from peft import PeftModel
        model = PeftModel.from_pretrained(model, str(entry.adapter(args.profile_adapter).path))
        model.eval()
    harness_generate(model, tokenizer, template, prompts[:bs], bs, 2)   # warm-up
    handles = _mark_lora_branches(model)
    try:
        with profile(activities=[ProfilerActivity.CPU]) as prof:   # no Python tracing: it would slow the loop
            start = time.perf_counter()
            rate, tokens = harness_generate(model, tokenizer, template, prompts, bs, args.new_tokens)
            wall = time.perf_counter() - start
    finally:
        for handle in handles:
            handle.remove()
    kinds, ops = {}, {}
    for event in prof.events():
        above, parent = [], event.cpu_parent
        while parent is not None:
            above.append(parent.name)
            parent = parent.cpu_parent
        seconds = event.self_cpu_time_total / 1e6
        kind = classify(event.name, above)
        if kind == PYTHON:   # a range or module marker: its ops are counted on their own
            continue
        kinds[kind] = kinds.get(kind, 0.0) + seconds
        ops[event.name] = ops.get(event.name, 0.0) + seconds
    kinds[PYTHON] = max(wall - sum(kinds.values()), 0.0)   # the time outside every torch op
    rows = [{"kind": k, "seconds": round(v, 4), "share": round(v / wall, 4)}
            for k, v in sorted(kinds.items(), key=lambda kv: -kv[1])]
    top = [{"op": k, "seconds": round(v, 4), "share": round(v / wall, 4)}
           for k, v in sorted(ops.items(), key=lambda kv: -kv[1])[:12]]
    result = {"model": args.model, "precision": precision, "batch_size": bs, "adapter": args.profile_adapter,
              "prompts": len(prompts), "new_tokens": args.new_tokens, "wall_s": round(wall, 4),
              "tok_s": round(rate, 1), "tokens": tokens, "threads": torch.get_num_threads(), "kinds": rows,
              "top_ops": top, "cpu": cpu_description(),
              "int8_kernels": args.int8_kernels if precision == "8bit" else None}
    print(json.dumps(result, ensure_ascii=False), flush=True)
    return result


def cpu_description() -> dict:
    """The CPU's model name and the vector instruction sets that decide these figures."""
    model, flags = platform.processor() or platform.machine(), set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
            elif line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    wanted = ("avx2", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16", "amx_int8", "amx_tile", "avx_vnni")
    return {"model": model, "instruction_sets": [f for f in wanted if f in flags]}


# ------------------------------------------------------------------ train

def section_train(args, work: Path) -> dict:
    import shutil

    runs = {}
    # the trainer, the trainer with TRL's own LM head on the CPU (what the compact head buys), TRL's defaults
    for name, extra in (("trainer", []), ("trainer_every_position", ["--lm_head_completion_only", "false"]),
                        ("trl_defaults", TRL_DEFAULTS)):
        out = work / f"train_{name}"
        shutil.rmtree(out, ignore_errors=True)   # a checkpoint left by an earlier run would be resumed
        cli = ["--recipe", args.train_recipe, "--max_steps", str(args.train_steps), "--max_minutes", "0",
               "--logging_steps", "1", "--save_steps", "100000", "--output_dir", str(out / "checkpoints"),
               "--adapter_dir", str(out / "adapter"), *extra]
        proc = child("training.train", cli, work / f"train_{name}.log")
        stats = json.loads((out / "adapter" / "training_stats.json").read_text())
        logs = [e for e in stats["log_history"] if "loss" in e]
        # steady state: from the end of step 1 to the end (the first step pays for warm-up)
        first = logs[0]
        steady = ((stats["tokens_trained"] - first["num_tokens"]) / (stats["wall_seconds"] - first["train_runtime"])
                  if len(logs) > 1 and "train_runtime" in first else None)
        runs[name] = {"command": "python -m training.train " + " ".join(cli), "steps": stats["steps"],
                      "wall_seconds": stats["wall_seconds"], "tokens_trained": stats["tokens_trained"],
                      "tokens_with_padding": stats["tokens_seen"],
                      "padding_share": round(1 - stats["tokens_trained"] / stats["tokens_seen"], 3),
                      "trained_tok_s": stats["trained_tokens_per_second"],
                      "steady_trained_tok_s": round(steady, 1) if steady else None,
                      "losses": [round(e["loss"], 4) for e in logs], "peak_rss_mb": proc["peak_rss_mb"]}
        print(name, json.dumps({k: v for k, v in runs[name].items() if k != "losses"}), flush=True)
    t, d = runs["trainer"], runs["trl_defaults"]
    return {"recipe": args.train_recipe, "runs": runs,
            "speedup": round(t["trained_tok_s"] / d["trained_tok_s"], 2),
            "mean_loss": {k: round(sum(r["losses"]) / len(r["losses"]), 4) for k, r in runs.items()}}


# ------------------------------------------------------------------ matrix

def _metrics(results: dict) -> dict:
    return {(task, key): value for task, metrics in results.items() for key, value in metrics.items()
            if isinstance(value, (int, float)) and not isinstance(value, bool) and "stderr" not in key}


def section_matrix(args, work: Path) -> dict:
    import shutil

    from benchmark.loading import prepare
    from benchmark.registry import load_registry

    registry = load_registry()
    out = work / "matrix_run_all"
    shutil.rmtree(out, ignore_errors=True)
    import torch
    device = "cuda" if torch.cuda.is_available() else "cpu"
    include = [str(Path(p).resolve()) for p in args.include_path]
    common = ["--models", *args.matrix_models, "--adapters", *args.matrix_adapters, "--tasks", *args.matrix_tasks,
              "--limit", str(args.matrix_limit), "--preset", "Deterministic", "--precision", args.matrix_precision,
              "--batch-size", str(args.batch_size), "--max-gen-toks", str(args.matrix_max_gen_toks),
              "--device", device, *(["--cache-dir", str(args.cache_dir)] if args.cache_dir else []),
              *[x for p in include for x in ("--include-path", p)], "--output-dir", str(out), "--no-leaderboard"]
    first = child("benchmark.run_all", common, work / "matrix_run_all.log")
    again = child("benchmark.run_all", common, work / "matrix_run_all_again.log")
    again_log = (work / "matrix_run_all_again.log").read_text(errors="replace")
    kept = re.search(r"(\d+) kept from an earlier run", again_log)
    cached_rows = int(kept.group(1)) if kept else 0
    again["model_loaded"] = "Loading weights" in again_log
    print(f"run_all: {first['seconds']} s; again with nothing changed: {again['seconds']} s", flush=True)

    stock_seconds, stock_peak, identical, compared, worst, combos = 0.0, 0, True, 0, 0.0, []
    for model in args.matrix_models:
        entry = registry.model(model)
        ckpt = prepare(entry, args.cache_dir, precisions=(args.matrix_precision,), registry=registry,
                       log=lambda *a: None)[args.matrix_precision]
        for adapter in args.matrix_adapters:
            name = "base" if adapter in ("base", "none") else adapter
            ours = json.loads(max((out / model / name).glob("results_*.json")).read_text())
            margs = f"pretrained={ckpt}" + ("" if name == "base" else f",peft={entry.adapter(name).path}")
            stock_out = work / "matrix_stock" / model / name
            shutil.rmtree(stock_out, ignore_errors=True)
            cli = ["--model", "hf", "--model_args", margs, "--tasks", *args.matrix_tasks, "--include_path",   # lm_eval takes one folder
                   include[-1] if include else str(REPO / "tasks"), "--device", device,
                   "--samples", json.dumps(ours["benchmark"]["samples"]),
                   "--batch_size", str(args.batch_size), "--apply_chat_template",
                   "--gen_kwargs", f"do_sample=False,max_gen_toks={args.matrix_max_gen_toks}",
                   "--seed", str(ours["benchmark"]["seed"]), "--output_path", str(stock_out), "--log_samples"]
            proc = child("lm_eval", cli, work / f"matrix_stock_{model}_{name}.log")
            stock_seconds += proc["seconds"]
            stock_peak = max(stock_peak, proc["peak_rss_mb"])
            theirs = json.loads(max(stock_out.rglob("results_*.json")).read_text())
            a, b = _metrics(ours["results"]), _metrics(theirs["results"])
            diffs = {k: abs(a[k] - b[k]) for k in a.keys() & b.keys()}
            compared += len(diffs)
            worst = max([worst, *diffs.values()])
            identical &= bool(diffs) and all(v == 0 for v in diffs.values())
            combos.append({"model": model, "adapter": name, "stock_seconds": proc["seconds"],
                           "metrics_compared": len(diffs), "max_abs_diff": max(diffs.values(), default=None),
                           "stock_command": "lm_eval " + " ".join(cli[:4] + ["..."])})
            print(json.dumps(combos[-1]), flush=True)
    return {"models": args.matrix_models, "adapters": args.matrix_adapters, "tasks": args.matrix_tasks,
            "limit": args.matrix_limit, "batch_size": args.batch_size, "max_gen_toks": args.matrix_max_gen_toks,
            "run_all_command": "python benchmark/run_all.py " + " ".join(common[:-1]) + " --no-leaderboard",
            "run_all_seconds": first["seconds"], "run_all_peak_rss_mb": first["peak_rss_mb"],
            "stock_seconds": round(stock_seconds, 1), "stock_peak_rss_mb": stock_peak,
            "ratio": round(stock_seconds / first["seconds"], 2), "metrics_compared": compared,
            "metrics_identical": identical, "max_abs_diff": worst, "combinations": combos,
            "cache_seconds": again["seconds"], "cache_share": round(again["seconds"] / first["seconds"], 4),
            "cache_rows": cached_rows, "cache_peak_rss_mb": again["peak_rss_mb"],
            "cache_model_loaded": again["model_loaded"]}


# ------------------------------------------------------------------ precision

def section_precision(args) -> dict:
    found, seconds = {}, {}
    Path(args.precision_root).mkdir(parents=True, exist_ok=True)
    for precision in ("8bit", "bf16"):
        for tasks in args.precision_tasks:
            out = Path(args.precision_root) / precision / tasks.replace(" ", "+")
            cli = ["--models", args.model, "--adapters", *args.precision_adapters, "--tasks", *tasks.split(),
                   "--full", "--max-gen-toks", "128", "--precision", precision, "--batch-size",
                   str(args.precision_batch_size), "--output-dir", str(out), "--no-leaderboard",
                   *(x for d in args.include_path for x in ("--include-path", str(d))),
                   *(["--cache-dir", str(args.cache_dir)] if args.cache_dir else [])]
            proc = child("benchmark.run_all", cli, Path(args.precision_root) / f"{precision}_{tasks.replace(' ', '+')}.log")
            # completed combinations only (done.json): a folder left by a killed run has no results
            for folder in sorted(p.parent for p in (out / args.model).glob("*/done.json")):
                data = json.loads(max(folder.glob("results_*.json")).read_text())
                cost = seconds.setdefault(folder.name, {}).setdefault(precision, {"seconds": 0.0, "runs": []})
                cost["seconds"] = round(cost["seconds"] + json.loads((folder / "done.json").read_text())["summary"]["seconds"], 1)
                cost["runs"].append(tasks)   # the evaluation's own time, also for a run kept from before
                for task, metrics in data["results"].items():
                    for key, value in metrics.items():
                        if isinstance(value, (int, float)) and "stderr" not in key and key.endswith(",none"):
                            found.setdefault((folder.name, task, key.split(",")[0]), {})[precision] = value
            print(precision, tasks, f"peak {proc['peak_rss_mb']} MiB", flush=True)
    rows = [{"adapter": a, "task": t, "metric": m, **v} for (a, t, m), v in sorted(found.items())]
    return {"model": args.model, "tasks": args.precision_tasks, "rows": rows, "seconds": seconds,
            "command": f"python -m benchmark.perf --sections precision --model {args.model}"}


# ------------------------------------------------------------------ report

def render_profile(record: dict) -> list[str]:
    lines = []
    for key, r in sorted((record.get("profile") or {}).items()):
        cpu = r["cpu"]
        kernels = {"fast": ", int8 kernels of `benchmark/int8_cpu.py`",
                   "stock": ", bitsandbytes' own int8 kernels"}.get(r.get("int8_kernels", "stock" if r["precision"] == "8bit" else None), "")
        lines += [f"## Where generation time goes: `{r['model']}`, {r['precision']}, batch {r['batch_size']}"
                  + (f", adapter `{r['adapter']}`" if r.get("adapter") else "") + kernels, "",
                  f"`{r['command']}`", "",
                  f"CPU: {cpu['model']} ({', '.join(cpu['instruction_sets']) or 'no AVX2'}), {r['threads']} threads"
                  + (f", torch {r['versions']['torch']}, transformers {r['versions']['transformers']}"
                     if r.get("versions") else "") + ". "
                  f"{r['prompts']} law prompts, {r['new_tokens']} new tokens each through run_all's harness: "
                  f"{r['wall_s']} s, {r['tok_s']} new tokens/s (under the profiler, which slows it). Self CPU time "
                  "of torch ops by kind of work; LoRA layers: the ops inside PEFT's lora_A / lora_B calls; bitsandbytes: "
                  "the ops inside its int8 matmul.", "",
                  "| kind of work | seconds | share of wall time |", "|---|---:|---:|"]
        lines += [f"| {k['kind']} | {k['seconds']} | {k['share']:.1%} |" for k in r["kinds"]]
        lines += ["", "Slowest ops: " + ", ".join(f"`{o['op']}` {o['share']:.1%}" for o in r["top_ops"][:8]) + ".", ""]
    return lines


def _harness_8bit(record: dict, model: str, cpu_model: str) -> dict | None:
    """The best 8-bit harness row of the generate section for ``model``, measured on ``cpu_model``."""
    g = (record.get("generate") or {}).get(model)
    if not g or (g.get("cpu") or {}).get("model") != cpu_model:
        return None
    rows = [r for r in g["rows"] if r["precision"] == "8bit"]
    return max(rows, key=lambda r: r["harness_tok_s"]) if rows else None


def _llamacpp_single(r: dict) -> float:
    """llama.cpp's fastest one stream over the GGUF files of a llamacpp record."""
    return max(x["single_tok_s"] for x in r["rows"])


def render_llamacpp(record: dict) -> list[str]:
    lines = []
    for key, r in sorted((record.get("llamacpp") or {}).items()):
        cpu = r["cpu"]
        lines += [f"## llama.cpp: `{r['model']}`", "", f"`{r['command']}`", "",
                  f"CPU: {cpu['model']} ({', '.join(cpu['instruction_sets']) or 'no AVX2'}), llama-cpp-python "
                  f"{r['llama_cpp_python']} built on it" + (f" (ggml: `{r['llama_cpp_build']}`)" if r.get("llama_cpp_build") else "")
                  + f". Greedy, {r['prompts']} law prompts, {r['new_tokens']} new "
                  "tokens each, prompt processing included (as in the generate section).", "",
                  "| GGUF | threads | one stream tok/s | batched tok/s | batch | batched answers equal to one stream's |",
                  "|---|---:|---:|---:|---:|---:|"]
        lines += [f"| {x['file']} ({x['quant']}) | {x['threads']} | {x['single_tok_s']} | {x['batched_tok_s']} | "
                  f"{x['batch_size']} | {x['batched_answers_as_single']} of {r['prompts']} |" for x in r["rows"]]
        h = _harness_8bit(record, r["model"], cpu["model"])
        if h:
            single = _llamacpp_single(r)
            lines += ["", f"The harness in 8-bit on the same CPU (generate section, batch {h['batch_size']}): "
                      f"{h['harness_tok_s']} tok/s, {h['harness_tok_s'] / single:.2f}x llama.cpp's best one stream."]
        lines.append("")
    return lines


def render(record: dict) -> str:
    m = record.get("machine", {})
    peaks = record.get("matmul_peak_gflops", {})
    lines = ["# Performance", "",
             f"Measured by `python -m benchmark.perf` (each section's command below) on {m.get('cpu_count')} CPU cores "
             f"({m.get('processor') or m.get('platform')}), torch {record.get('versions', {}).get('torch')}, transformers "
             f"{record.get('versions', {}).get('transformers')}; raw figures in `perf.json`. The performance targets are "
             "checked in the last section.", ""]
    if peaks:
        lines += [f"Matmul peak (1024x1024): fp32 {peaks['fp32']:.0f} GFLOP/s, bf16 {peaks['bf16']:.0f} GFLOP/s.", ""]
    for model, g in sorted(record.get("generate", {}).items()):
        runs = {}   # command -> (precisions, cpu, peak): rows of one table may come from several runs
        for r in g["rows"]:
            c = runs.setdefault(r.get("command", g["command"]), ([], r["cpu"] if "cpu" in r else g.get("cpu"),
                                                                r.get("matmul_peak_gflops") or g.get("matmul_peak_gflops")))
            if r["precision"] not in c[0]:
                c[0].append(r["precision"])
        lines += [f"## Generation: `{model}`", ""]
        for cmd, (precisions, cpu, pk) in runs.items():
            lines += [f"`{cmd}`" + (f" ({', '.join(precisions)} rows" + (
                f"; CPU {cpu['model']} ({', '.join(cpu['instruction_sets']) or 'no AVX2'})" if cpu else
                "; CPU not recorded") + (f"; matmul peak fp32 {pk['fp32']:.0f}, bf16 {pk['bf16']:.0f} GFLOP/s" if pk else "")
                + ")" if len(runs) > 1 or cpu else ""), ""]
        lines += [f"Greedy, {g['prompts']} law prompts, {g['new_tokens']} new tokens each."
                  + (f" Peak share against the matmul peak measured in the same run (fp32 "
                     f"{g['matmul_peak_gflops']['fp32']:.0f}, bf16 {g['matmul_peak_gflops']['bf16']:.0f} GFLOP/s)."
                     if g.get("matmul_peak_gflops") and len(runs) == 1 else
                     " Each row's peak share is against the matmul peak of its own run." if len(runs) > 1 else ""), "",
                  "| precision | batch | bare tok/s | run_all harness tok/s | harness / bare | share of matmul peak |"
                  + (" with the prompt tokens |" if g.get("prompt_tokens") else ""),
                  "|---|---:|---:|---:|---:|---:|" + ("---:|" if g.get("prompt_tokens") else "")]
        lines += [f"| {r['precision']} | {r['batch_size']} | {r['bare_tok_s']} | {r['harness_tok_s']} | "
                  f"{r['harness_over_bare']:.0%} | {r['peak_share']:.1%} |"
                  + (f" {r['processed_peak_share']:.1%} |" if g.get("prompt_tokens") else "") for r in g["rows"]]
        lines.append("")
        if g.get("prompt_tokens"):
            lines += [f"Share of matmul peak = new tokens/s × 2 × parameters / peak (the target's measure). The "
                      f"prompts add {g['prompt_tokens']:,} tokens ({g['prompt_tokens'] / g['prompts']:.0f} per "
                      "prompt, padding excluded) that the model also runs; the last column counts them too.", ""]
        if g.get("variants"):
            lines += ["What other changes to bare `generate` buy (same prompts and batch; answers that differ from "
                      "the default path's, greedy):", "",
                      "| precision | batch | change | default tok/s | with the change tok/s | answers changed |",
                      "|---|---:|---|---:|---:|---:|"]
            for v in g["variants"]:
                if v.get("refused"):
                    lines.append(f"| {v['precision']} | {v['batch_size']} | {VARIANTS[v['variant']]} | "
                                 f"{v['baseline_tok_s']} | refused: {v['refused']} | |")
                else:
                    base = (f"{v['baseline_tok_s']}, again after it {v['baseline_again_tok_s']}"
                            if v.get("baseline_again_tok_s") is not None else f"{v['baseline_tok_s']}")
                    lines.append(f"| {v['precision']} | {v['batch_size']} | {VARIANTS[v['variant']]} | "
                                 f"{base} | {v['tok_s']} | {v['answers_changed']} of {v['answers']} |")
            lines.append("")
    lines += render_profile(record)
    lines += render_llamacpp(record)
    for t in train_sections(record).values():
        lines += [f"## Training throughput: `{t['recipe']}`", "", f"`{t['command']}`", "",
                  "| run | steps | tokens trained (no padding) | padding share | tok/s | steady tok/s | mean loss | peak RSS |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|"]
        for name, r in t["runs"].items():
            lines.append(f"| {name} | {r['steps']} | {r['tokens_trained']} | {r['padding_share']:.0%} | "
                         f"{r['trained_tok_s']} | {r['steady_trained_tok_s']} | {t['mean_loss'][name]} | "
                         f"{r['peak_rss_mb']} MiB |")
        every = t["runs"].get("trainer_every_position")
        lines += ["", f"Speed-up of the trainer over TRL's defaults: **{t['speedup']}x**"
                  + (f" (`trainer_every_position` is the trainer with TRL's CPU LM head, every position projected: "
                     f"the completion-only head alone is {t['runs']['trainer']['trained_tok_s'] / every['trained_tok_s']:.2f}x)"
                     if every else "") + ". Losses per step:", ""]
        lines += [f"- {name}: {', '.join(str(x) for x in r['losses'])}" for name, r in t["runs"].items()]
        lines.append("")
    x = record.get("matrix")
    if x:
        lines += ["## run_all against stock lm_eval", "", f"`{x['command']}`", "",
                  f"Matrix: {', '.join(x['models'])} × {', '.join(x['adapters'])}; tasks {', '.join(x['tasks'])}; "
                  f"{x['limit']} documents per task; batch {x['batch_size']}; answers capped at {x['max_gen_toks']} tokens.", "",
                  "| what | wall time | peak RSS |", "|---|---:|---:|",
                  f"| run_all, one process | {x['run_all_seconds']} s | {x['run_all_peak_rss_mb']} MiB |",
                  f"| stock lm_eval, one command per combination | {x['stock_seconds']} s | {x['stock_peak_rss_mb']} MiB |",
                  f"| run_all again, nothing changed | {x['cache_seconds']} s ({x['cache_share']:.1%}) | "
                  f"{x['cache_peak_rss_mb']} MiB |", "",
                  f"Ratio stock / run_all: **{x['ratio']}x**. Metrics compared: {x['metrics_compared']}; identical: "
                  f"**{x['metrics_identical']}** (largest difference {x['max_abs_diff']}).", ""]
    pr = record.get("precision")
    if pr:
        lines += ["## 8-bit against bf16 on the test splits", "", f"`{pr['command']}`", "",
                  "| adapter | task | metric | 8bit | bf16 | bf16 − 8bit |", "|---|---|---|---:|---:|---:|"]
        for r in pr["rows"]:
            a, b = r.get("8bit"), r.get("bf16")
            if not (isinstance(a, (int, float)) and isinstance(b, (int, float))):
                continue   # measured in one precision only (e.g. an adapter folder left by another run)
            lines.append(f"| {r['adapter']} | {r['task']} | {r['metric']} | {a:.4f} | {b:.4f} | {b - a:+.4f} |")
        lines.append("")
        costs = precision_costs(pr)
        if costs:
            lines += ["Evaluation time of the same runs (each results folder's own `done.json` seconds, model "
                      "loading excluded):", "", "| adapter | tasks | 8bit | bf16 | 8bit / bf16 |", "|---|---|---:|---:|---:|"]
            lines += [f"| {a} | {', '.join(tasks)} | {s8} s | {s16} s | {s8 / s16:.2f}x |" for a, tasks, s8, s16 in costs]
            lines.append("")
    lines += ["## Targets", "", "| # | target | measured | met |", "|---|---|---|---|"]
    for row in targets(record):
        lines.append("| " + " | ".join(str(c) for c in row) + " |")
    notes = record.get("notes")
    if notes:
        lines += ["", "## What limits the figures", "", notes]
    return "\n".join(lines) + "\n"


TRAIN_RUN_NAMES = {"trainer": "trainer", "trainer_every_position": "trainer (LM head on every position)",
                   "trl_defaults": "TRL defaults"}


def train_sections(record: dict) -> dict:
    """{recipe: train section}."""
    return dict(record.get("train") or {})


def precision_costs(pr: dict) -> list[tuple]:
    """(adapter, task runs, 8-bit seconds, bf16 seconds) where both precisions ran the same task runs."""
    out = []
    for adapter, by in sorted(pr.get("seconds", {}).items()):
        a, b = by.get("8bit"), by.get("bf16")
        if a and b and sorted(a["runs"]) == sorted(b["runs"]) and b["seconds"]:
            out.append((adapter, sorted(a["runs"]), a["seconds"], b["seconds"]))
    return out


def targets(record: dict) -> list[tuple]:
    out = []
    x, trains, gen = record.get("matrix"), train_sections(record), record.get("generate", {})
    if x:
        out.append((1, "run_all ≥ 3x faster than stock lm_eval", f"{x['ratio']}x", "yes" if x["ratio"] >= 3 else "no"))
    rows8 = [r for g in gen.values() for r in g["rows"] if r["precision"] == "8bit"]
    if rows8:
        best = max(rows8, key=lambda r: r["bare_tok_s"])
        out.append((2, "harness ≥ 85% of bare generate (8-bit, best batch)",
                    f"{best['harness_over_bare']:.0%} (batch {best['batch_size']})",
                    "yes" if best["harness_over_bare"] >= 0.85 else "no"))
    large = max(gen.items(), key=lambda kv: kv[1]["rows"][0]["parameters"], default=None)
    if large:
        rows = [r for r in large[1]["rows"] if r["precision"] == "8bit"]
        if rows:
            best = max(rows, key=lambda r: r["peak_share"])
            out.append((3, f"default path ≥ 35% of matmul peak ({large[0]}, 8-bit)",
                        f"{best['peak_share']:.1%} (batch {best['batch_size']})", "yes" if best["peak_share"] >= 0.35 else "no"))
    if trains:
        out.append((4, "trainer ≥ 1.5x TRL defaults (tokens/s)",
                    ", ".join(f"{t['speedup']}x ({Path(recipe).parent.name}/{Path(recipe).stem})"
                              for recipe, t in trains.items()),
                    "yes" if all(t["speedup"] >= 1.5 for t in trains.values()) else "no"))
    if x:
        out.append((5, "unchanged rerun ≤ 5% of the first, no model loaded",
                    f"{x['cache_share']:.1%}, {x['cache_rows']} combinations kept, model loaded: "
                    f"{x.get('cache_model_loaded')}, {x['cache_peak_rss_mb']} MiB peak",
                    "yes" if x["cache_share"] <= 0.05 and not x.get("cache_model_loaded") else "no"))
    peaks = [("run_all", x and x["run_all_peak_rss_mb"])] + [
        (f"{TRAIN_RUN_NAMES.get(k, k)} on {Path(recipe).parent.name}/{Path(recipe).stem}",
         r["peak_rss_mb"]) for recipe, t in trains.items() for k, r in t["runs"].items()]
    gpu_runs = []
    for stats in sorted(REPO.glob("adapters/*/*/training_stats.json")):   # the committed adapters' full runs
        card = json.loads(stats.read_text())
        name = f"trainer run of {stats.parent.parent.name}/{stats.parent.name}"
        if "CUDA" in str(card.get("device", "")):   # host memory of a GPU run says nothing about the CPU's
            gpu_runs.append(name)
        elif card.get("peak_rss_mb"):
            peaks.append((name, card["peak_rss_mb"]))
    peaks = [(k, v) for k, v in peaks if v]
    if peaks:
        shown = ", ".join(f"{k} {v} MiB" for k, v in peaks)
        if gpu_runs:
            shown += f" (not counted, trained on a GPU: {', '.join(gpu_runs)})"
        out.append((6, "peak memory < 8 GiB (8,192 MiB)", shown, "yes" if all(v < 8192 for _, v in peaks) else "no"))
    for key, r in sorted((record.get("llamacpp") or {}).items()):
        h = _harness_8bit(record, r["model"], r["cpu"]["model"])
        if h:
            single = _llamacpp_single(r)
            avx512 = "avx512f" in r["cpu"]["instruction_sets"]
            out.append((8, f"harness ≥ 1.5x llama.cpp one stream ({r['model']}, CPU {'with' if avx512 else 'without'} "
                        "AVX-512)", f"{h['harness_tok_s']} vs {single} tok/s ({h['harness_tok_s'] / single:.2f}x)",
                        "yes" if h["harness_tok_s"] >= 1.5 * single else "no"))
    if record.get("precision"):
        costs = precision_costs(record["precision"])
        shown = "; ".join(f"{a}: 8-bit {s8} s vs bf16 {s16} s ({s8 / s16:.2f}x)" for a, _, s8, s16 in costs)
        out.append((7, "report 8-bit vs bf16 cost and scores", (shown + "; scores in the table above") if shown
                    else "scores in the table above", "reported"))
    return out


def main(argv=None) -> int:
    import tempfile

    import torch
    import transformers

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sections", nargs="*", choices=["generate", "train", "matrix", "precision", "profile", "llamacpp"],
                   default=["generate", "train", "matrix"], help="what to measure (default: generate train matrix)")
    p.add_argument("--model", default="smollm2-135m-instruct", help="generate/precision: registry model")
    p.add_argument("--precisions", nargs="+", default=["8bit", "bf16", "fp32"], help="generate: precisions")
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8, 16], help="generate: batch sizes")
    p.add_argument("--prompts", type=int, default=16, help="generate: number of prompts")
    p.add_argument("--new-tokens", type=int, default=64, help="generate: new tokens per prompt")
    p.add_argument("--variants", nargs="*", default=[], choices=sorted(VARIANTS),
                   help="generate: changes to the default generate path, each measured at the last batch size "
                        "against it (speed, and answers that change)")
    p.add_argument("--profile-adapter", default=None, help="profile: registry adapter to attach (e.g. law)")
    p.add_argument("--int8-kernels", choices=["fast", "stock"], default="fast",
                   help="profile: the int8 matmul kernels of the 8-bit path (benchmark/int8_cpu.py or bitsandbytes')")
    p.add_argument("--train-recipe", default="training/recipes/smollm2-135m-instruct/law.yaml")
    p.add_argument("--train-steps", type=int, default=20)
    p.add_argument("--matrix-models", nargs="+", default=["smollm2-135m-instruct"])
    p.add_argument("--matrix-adapters", nargs="+", default=["base", "instruct", "law", "merged"])
    p.add_argument("--matrix-tasks", nargs="+", default=["ecuador_law_es", "instruct_es"])
    p.add_argument("--matrix-limit", type=int, default=20)
    p.add_argument("--matrix-max-gen-toks", type=int, default=128)
    p.add_argument("--matrix-precision", default="8bit", help="matrix: the prepared checkpoint both sides load")
    p.add_argument("--batch-size", type=int, default=16, help="matrix: batch size of both sides")
    p.add_argument("--include-path", nargs="*", default=[], help="matrix and precision: more task folders")
    p.add_argument("--cache-dir", type=Path, default=None, help="prepared checkpoints (default $BENCH_CACHE)")
    p.add_argument("--precision-tasks", nargs="+", default=["ecuador_law_es_qa", "instruct_es_gen"],
                   help="precision: one run_all --tasks value per entry (quote several names together)")
    p.add_argument("--precision-adapters", nargs="+", default=["base"])
    p.add_argument("--precision-batch-size", type=int, default=32)
    p.add_argument("--precision-root", default="results-full", help="precision: results folders (reused)")
    p.add_argument("--work-dir", type=Path, default=None, help="scratch folder (default: a temporary one)")
    p.add_argument("--out", type=Path, default=OUT_DIR, help="where perf.json and PERF.md go")
    p.add_argument("--notes-file", type=Path, help="Markdown written under 'What limits the figures' (kept in perf.json)")
    args = p.parse_args(argv)
    command = "python -m benchmark.perf " + shlex.join(sys.argv[1:] if argv is None else argv)

    record_path = args.out / "perf.json"
    record = json.loads(record_path.read_text()) if record_path.is_file() else {}
    versions = {"torch": torch.__version__, "transformers": transformers.__version__}
    if set(args.sections) - {"profile"}:   # a profile carries its own machine and versions
        record.update(machine={"cpu_count": os.cpu_count(), "platform": platform.platform(),
                               "processor": platform.processor()}, versions=versions)
    work = args.work_dir or Path(tempfile.mkdtemp(prefix="perf-"))
    work.mkdir(parents=True, exist_ok=True)
    if "generate" in args.sections:
        peaks = {"fp32": matmul_peak(torch.float32), "bf16": matmul_peak(torch.bfloat16)}
        print(f"matmul peak: fp32 {peaks['fp32']:.0f} GFLOP/s, bf16 {peaks['bf16']:.0f} GFLOP/s", flush=True)
        record["matmul_peak_gflops"] = peaks
        fresh = {**section_generate(args, peaks), "matmul_peak_gflops": peaks, "command": command}
        generate = record.setdefault("generate", {})
        generate[args.model] = merge_generate(generate.get(args.model), fresh)
    if "train" in args.sections:
        record["train"] = {**train_sections(record), args.train_recipe: {**section_train(args, work), "command": command}}
    if "matrix" in args.sections:
        record["matrix"] = {**section_matrix(args, work), "command": command}
    if "precision" in args.sections:
        record["precision"] = {**section_precision(args), "command": command}
    if "llamacpp" in args.sections:
        record.setdefault("llamacpp", {})[f"{args.model} on {cpu_description()['model']}"] = {
            **section_llamacpp(args), "command": command}
    if "profile" in args.sections:
        result = section_profile(args)
        key = f"{args.model} {result['precision']} batch {result['batch_size']} {args.profile_adapter or 'base'} " \
              f"on {result['cpu']['model']}" + (" int8 kernels fast" if result["int8_kernels"] == "fast" else "")
        record.setdefault("profile", {})[key] = {**result, "versions": versions, "command": command}
    if args.notes_file:
        record["notes"] = args.notes_file.read_text(encoding="utf-8").strip()
    args.out.mkdir(parents=True, exist_ok=True)
    from benchmark.results import atomic_write
    atomic_write(record_path, json.dumps(record, indent=1, ensure_ascii=False))
    atomic_write(args.out / "PERF.md", render(record))
    print(f"wrote {args.out / 'PERF.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
