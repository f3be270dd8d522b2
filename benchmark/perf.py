"""Performance figures: hardware peak, bare generation, and the harness against bare generation.

    python -m benchmark.perf                       # writes benchmark/PERF.md and benchmark/perf.json
    python -m benchmark.perf --model smollm2-135m-instruct --precisions 8bit bf16 --batch-sizes 1 8 16

Each comparison runs pair by pair in this one process, on the same prompts
(the first documents of ecuador_law_es_qa_visto, rendered with the model's
template), the same precision and the same batch size:

1. matmul peak: GFLOP/s of a 1024x1024 matmul, fp32 and bf16;
2. bare generation: a batched ``model.generate`` loop, greedy, N new tokens,
   tokens per second and the share of the matmul peak (tok/s x 2 x parameters);
3. harness: the same prompts through ``benchmark.harness.PresetLM.generate_until``
   (what run_all uses), as a fraction of bare.

Not a test: it prints and records measured numbers with the machine and versions.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
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


def bare_generate(model, tokenizer, prompts, batch_size, new_tokens) -> tuple[float, int]:
    import torch
    generated, start = 0, time.perf_counter()
    for i in range(0, len(prompts), batch_size):
        enc = tokenizer(prompts[i:i + batch_size], return_tensors="pt", padding=True).to(model.device)
        with torch.no_grad():
            out = model.generate(**enc, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False,
                                 pad_token_id=tokenizer.pad_token_id)
        generated += (out.shape[1] - enc.input_ids.shape[1]) * out.shape[0]
    return generated / (time.perf_counter() - start), generated


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


def main(argv=None) -> int:
    import torch
    import transformers

    from benchmark.loading import load_for_eval
    from benchmark.registry import load_registry
    from benchmark.templates import load_template

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="smollm2-135m-instruct")
    p.add_argument("--precisions", nargs="+", default=["8bit", "bf16", "fp32"])
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8, 16])
    p.add_argument("--prompts", type=int, default=16)
    p.add_argument("--new-tokens", type=int, default=64)
    p.add_argument("--out", type=Path, default=OUT_DIR)
    args = p.parse_args(argv)

    entry = load_registry().model(args.model)
    prompts = prompts_for(entry, args.prompts)
    template = load_template(entry.template)
    peaks = {"fp32": matmul_peak(torch.float32), "bf16": matmul_peak(torch.bfloat16)}
    print(f"matmul peak: fp32 {peaks['fp32']:.0f} GFLOP/s, bf16 {peaks['bf16']:.0f} GFLOP/s")
    rows = []
    for precision in args.precisions:
        model, tokenizer, _ = load_for_eval(entry, precision)
        params = sum(t.numel() for t in model.parameters())
        peak = peaks["bf16" if precision == "bf16" else "fp32"]
        for bs in args.batch_sizes:
            bare, _ = bare_generate(model, tokenizer, prompts, bs, args.new_tokens)
            harness, _ = harness_generate(model, tokenizer, template, prompts, bs, args.new_tokens)
            row = {"precision": precision, "batch_size": bs, "bare_tok_s": round(bare, 1),
                   "harness_tok_s": round(harness, 1), "harness_over_bare": round(harness / bare, 3),
                   "peak_share": round(bare * 2 * params / 1e9 / peak, 4), "parameters": params}
            rows.append(row)
            print(json.dumps(row))
        del model
    record = {"model": args.model, "prompts": len(prompts), "new_tokens": args.new_tokens, "matmul_peak_gflops": peaks,
              "rows": rows, "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(),
                                        "processor": platform.processor()},
              "versions": {"torch": torch.__version__, "transformers": transformers.__version__},
              "command": "python -m benchmark.perf " + " ".join(sys.argv[1:] if argv is None else argv)}
    (args.out / "perf.json").write_text(json.dumps(record, indent=1))
    lines = ["# Performance", "", f"Measured by `{record['command'].strip()}` on {record['machine']['cpu_count']} CPU cores, "
             f"torch {torch.__version__}, transformers {transformers.__version__}; raw figures in `perf.json`.", "",
             f"Matmul peak (1024x1024): fp32 {peaks['fp32']:.0f} GFLOP/s, bf16 {peaks['bf16']:.0f} GFLOP/s.", "",
             f"Greedy generation on `{args.model}`, {len(prompts)} law prompts, {args.new_tokens} new tokens each:", "",
             "| precision | batch | bare tok/s | run_all harness tok/s | harness / bare | share of matmul peak |",
             "|---|---:|---:|---:|---:|---:|"]
    lines += [f"| {r['precision']} | {r['batch_size']} | {r['bare_tok_s']} | {r['harness_tok_s']} | "
              f"{r['harness_over_bare']:.0%} | {r['peak_share']:.1%} |" for r in rows]
    (args.out / "PERF.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"wrote {args.out / 'PERF.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
