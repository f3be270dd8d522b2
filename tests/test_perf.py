"""benchmark/perf.py on a tiny configuration: every section runs and PERF.md reports it (no timing asserted)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import yaml

from benchmark import perf
from test_trainer import tiny_recipe, write_jsonl

REPO = Path(__file__).resolve().parents[1]


def test_perf_sections_run_end_to_end_on_tiny_llama(tiny_bench, tmp_path, monkeypatch):
    monkeypatch.setenv("BENCH_REGISTRY", str(tiny_bench.registry))
    monkeypatch.setenv("BENCH_CACHE", str(tiny_bench.cache))
    rows = [{"pregunta": f"¿Pregunta {i} sobre el Código del Trabajo?", "respuesta": f"Respuesta número {i}, artículo {i}."}
            for i in range(8)]
    data = write_jsonl(tmp_path / "law.jsonl", rows)
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump(tiny_recipe(data, per_device_train_batch_size=4)), encoding="utf-8")
    out = tmp_path / "out"
    assert perf.main(["--sections", "generate", "train", "matrix", "--model", "tiny-llama", "--precisions", "fp32",
                      "--batch-sizes", "2", "--prompts", "2", "--new-tokens", "4", "--variants", "static-cache",
                      "threads-1",
                      "--train-recipe", str(recipe), "--train-steps", "3",
                      "--matrix-models", "tiny-llama", "--matrix-adapters", "base", "law", "--matrix-tasks", "tiny_gen",
                      "--matrix-limit", "2", "--matrix-max-gen-toks", "6", "--matrix-precision", "fp32",
                      "--batch-size", "2", "--include-path", str(tiny_bench.tasks),
                      "--work-dir", str(tmp_path / "work"), "--out", str(out)]) == 0
    record = json.loads((out / "perf.json").read_text())
    gen = record["generate"]["tiny-llama"]["rows"][0]
    assert gen["bare_tok_s"] > 0 and gen["harness_tok_s"] > 0 and gen["parameters"] > 0
    assert record["generate"]["tiny-llama"]["prompt_tokens"] > 2   # two prompts of several tokens each
    assert gen["processed_peak_share"] > gen["peak_share"] > 0
    variants = {v["variant"]: v for v in record["generate"]["tiny-llama"]["variants"]}
    assert set(variants) == {"static-cache", "threads-1"}
    for v in variants.values():
        assert v["tok_s"] > 0 and v["answers"] == 2 and 0 <= v["answers_changed"] <= 2 and v["baseline_tok_s"] > 0

    train = record["train"][str(recipe)]
    for run in train["runs"].values():
        assert run["steps"] == 3 and len(run["losses"]) == 3
        assert 0 < run["tokens_trained"] <= run["tokens_with_padding"] and run["peak_rss_mb"] > 100
    # TRL's defaults pad every batch to its longest row at random; the recipe groups by length
    assert set(train["runs"]) == {"trainer", "trainer_every_position", "trl_defaults"}
    # the completion-only LM head changes the work, not the losses (same recipe, same batches)
    assert train["runs"]["trainer"]["losses"] == pytest.approx(train["runs"]["trainer_every_position"]["losses"],
                                                               rel=1e-3)
    assert "--max_length 1024" in train["runs"]["trl_defaults"]["command"]
    assert train["runs"]["trl_defaults"]["command"].endswith("--lm_head_completion_only false")
    assert train["speedup"] > 0
    # again in the same work folder: the checkpoints of the first run are not resumed
    assert perf.main(["--sections", "train", "--train-recipe", str(recipe), "--train-steps", "3",
                      "--work-dir", str(tmp_path / "work"), "--out", str(out)]) == 0
    again = json.loads((out / "perf.json").read_text())["train"][str(recipe)]
    assert all(run["steps"] == 3 and len(run["losses"]) == 3 for run in again["runs"].values())
    for name in again["runs"]:
        stats = json.loads((tmp_path / "work" / f"train_{name}" / "adapter" / "training_stats.json").read_text())
        assert stats["resumed_from"] is None, f"{name} resumed a checkpoint of the first run"

    matrix = record["matrix"]
    assert [c["adapter"] for c in matrix["combinations"]] == ["base", "law"]
    assert matrix["run_all_seconds"] > 0 and matrix["stock_seconds"] > 0
    # the same checkpoint, adapter, documents and greedy decoding give the same scores
    assert matrix["metrics_compared"] >= 2 and matrix["metrics_identical"], matrix
    assert matrix["cache_rows"] == 2 and matrix["cache_seconds"] < matrix["run_all_seconds"]
    assert not matrix["cache_model_loaded"]

    page = (out / "PERF.md").read_text(encoding="utf-8")
    assert "## Targets" in page and "run_all against stock lm_eval" in page and "Training throughput" in page
    assert "| 4 | trainer ≥ 1.5x TRL defaults" in page
    assert "static KV cache" in page and "answers changed" in page and "with the prompt tokens" in page


def test_perf_precision_section_compares_8bit_with_bf16_scores_and_time(tiny_bench, tmp_path, monkeypatch):
    monkeypatch.setenv("BENCH_REGISTRY", str(tiny_bench.registry))
    monkeypatch.setenv("BENCH_CACHE", str(tiny_bench.cache))
    out, root = tmp_path / "out", tmp_path / "precision"
    argv = ["--sections", "precision", "--model", "tiny-llama", "--precision-tasks", "tiny_gen",
            "--precision-adapters", "base", "law", "--precision-batch-size", "2", "--precision-root", str(root),
            "--include-path", str(tiny_bench.tasks), "--out", str(out)]
    (root / "8bit" / "tiny_gen" / "tiny-llama" / "merged").mkdir(parents=True)   # left by a killed run: no results
    assert perf.main(argv) == 0
    record = json.loads((out / "perf.json").read_text())["precision"]
    assert {r["adapter"] for r in record["rows"]} == {"base", "law"}
    assert all(isinstance(r["8bit"], float) and isinstance(r["bf16"], float) for r in record["rows"])
    for adapter in ("base", "law"):
        for precision in ("8bit", "bf16"):
            cost = record["seconds"][adapter][precision]
            assert cost["runs"] == ["tiny_gen"] and cost["seconds"] > 0
    page = (out / "PERF.md").read_text(encoding="utf-8")
    assert "## 8-bit against bf16 on the test splits" in page and "| law | tiny_gen |" in page
    assert "| 7 | report 8-bit vs bf16 cost and scores | base: 8-bit " in page


def test_profile_section_attributes_the_time_to_kinds_of_work(tiny_bench, tmp_path, monkeypatch):
    monkeypatch.setenv("BENCH_REGISTRY", str(tiny_bench.registry))
    monkeypatch.setenv("BENCH_CACHE", str(tiny_bench.cache))
    out = tmp_path / "out"
    assert perf.main(["--sections", "profile", "--model", "tiny-llama", "--precisions", "fp32", "--batch-sizes", "2",
                      "--prompts", "2", "--new-tokens", "4", "--profile-adapter", "law", "--out", str(out)]) == 0
    (r,) = json.loads((out / "perf.json").read_text())["profile"].values()
    kinds = {k["kind"]: k["seconds"] for k in r["kinds"]}
    assert kinds["LoRA layers (PEFT)"] > 0 and kinds["float matmuls"] > 0   # the adapter's layers are found
    assert not any(k.startswith("bitsandbytes") for k in kinds)            # fp32: no int8 kernel ran
    assert sum(kinds.values()) == pytest.approx(r["wall_s"], rel=0.05) and kinds[perf.PYTHON] > 0
    assert r["tokens"] == 2 * 4 and r["cpu"]["model"]
    page = (out / "PERF.md").read_text(encoding="utf-8")
    assert "Where generation time goes: `tiny-llama`, fp32, batch 2, adapter `law`" in page


def test_profile_kinds_by_op_name_and_caller():
    bnb = "bitsandbytes int8 matmul (quantize, int8 mm, outliers, dequantize)"
    assert perf.classify("bitsandbytes::int8_linear_matmul", []) == bnb
    assert perf.classify("aten::nonzero", ["aten::where", "MatMul8bitLt"]) == bnb   # its outlier search
    assert perf.classify("aten::mm", ["aten::linear", perf.LORA_RANGE, "nn.Module: Linear_1"]) == "LoRA layers (PEFT)"
    assert perf.classify("aten::addmm", ["bitsandbytes/autograd/_functions.py(300): forward"]) == bnb
    assert perf.classify("torch/nn/modules/module.py(1782): _call_impl", []) == perf.PYTHON
    assert perf.classify("aten::_to_copy", []) == "dtype casts"
    assert perf.classify("aten::addmm", []) == "float matmuls"
    assert perf.classify("aten::rsqrt", []) == "other ops"


def test_the_int8_kernels_variant_changes_no_answer_of_an_8bit_model(tiny_bench, tmp_path, monkeypatch):
    """The generate section's stock-int8 variant reruns the 8-bit model on bitsandbytes' own kernels:
    benchmark/int8_cpu.py's kernels must give every greedy answer unchanged."""
    monkeypatch.setenv("BENCH_REGISTRY", str(tiny_bench.registry))
    monkeypatch.setenv("BENCH_CACHE", str(tiny_bench.cache))
    out = tmp_path / "out"
    assert perf.main(["--sections", "generate", "--model", "tiny-llama", "--precisions", "8bit", "--batch-sizes", "4",
                      "--prompts", "4", "--new-tokens", "12", "--variants", "stock-int8", "--out", str(out)]) == 0
    g = json.loads((out / "perf.json").read_text())["generate"]["tiny-llama"]
    (v,) = g["variants"]
    assert v["variant"] == "stock-int8" and v["answers"] == 4 and v["answers_changed"] == 0 and v["tok_s"] > 0
    assert v["baseline_again_tok_s"] > 0   # the default path measured again, warm
    assert g["cpu"]["model"]
    from benchmark import int8_cpu
    assert int8_cpu.installed()   # the variant puts the project's kernels back


def test_the_llamacpp_section_says_how_to_get_llama_cpp(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "llama_cpp", None)   # as on a machine without llama-cpp-python
    with pytest.raises(SystemExit, match="setup.sh --llama-cpp"):
        perf.main(["--sections", "llamacpp", "--out", str(tmp_path)])


def test_a_generate_run_replaces_only_the_precisions_it_measured():
    def run(precisions, command, prompts=4, tok=8):
        rows = [{"precision": p, "batch_size": b, "bare_tok_s": 1.0} for p in precisions for b in (4, 16)]
        return {"model": "m", "prompts": prompts, "new_tokens": tok, "rows": rows,
                "variants": [{"precision": p, "batch_size": 16, "variant": "threads-1"} for p in precisions],
                "prompt_tokens": 40, "cpu": {"model": command, "instruction_sets": []},
                "matmul_peak_gflops": {"fp32": 1.0, "bf16": 2.0}, "command": command}

    first = perf.merge_generate(None, run(["8bit", "bf16"], "first"))
    second = perf.merge_generate(first, run(["8bit"], "second"))
    assert [(r["precision"], r["batch_size"], r["command"]) for r in second["rows"]] == [
        ("8bit", 4, "second"), ("8bit", 16, "second"), ("bf16", 4, "first"), ("bf16", 16, "first")]
    one_size = run(["bf16"], "third")
    one_size["rows"] = [r for r in one_size["rows"] if r["batch_size"] == 16]
    third = perf.merge_generate(second, one_size)   # only (bf16, 16) is replaced
    assert [(r["precision"], r["batch_size"], r["command"]) for r in third["rows"]] == [
        ("8bit", 4, "second"), ("8bit", 16, "second"), ("bf16", 4, "first"), ("bf16", 16, "third")]
    assert [(v["precision"], v["command"]) for v in second["variants"]] == [("8bit", "second"), ("bf16", "first")]
    assert second["rows"][2]["cpu"]["model"] == "first"
    page = perf.render({"generate": {"m": {**second, "rows": [{**r, "bare_tok_s": 1, "harness_tok_s": 1,
                                                                "harness_over_bare": 1, "peak_share": 0.1,
                                                                "processed_peak_share": 0.2, "parameters": 1} for r in second["rows"]],
                                           "variants": []}}})
    assert "`second` (8bit rows" in page and "`first` (bf16 rows" in page
    # other prompts or answer lengths: the tables would not compare, the new run replaces the old
    other = perf.merge_generate(second, run(["fp32"], "third", prompts=8))
    assert {r["precision"] for r in other["rows"]} == {"fp32"}


def test_the_llamacpp_section_measures_one_stream_and_batched_decoding(tmp_path, bench_cache, monkeypatch):
    """Where llama-cpp-python is built (scripts/setup.sh --llama-cpp; it is not part of the test set-up)."""
    pytest.importorskip("llama_cpp")
    monkeypatch.setenv("BENCH_CACHE", str(bench_cache))
    out = tmp_path / "out"
    assert perf.main(["--sections", "llamacpp", "--model", "smollm2-135m-instruct", "--prompts", "3",
                      "--new-tokens", "4", "--batch-sizes", "2", "--out", str(out)]) == 0
    (r,) = json.loads((out / "perf.json").read_text())["llamacpp"].values()
    assert [x["quant"] for x in r["rows"]] == ["as shipped", "Q8_0"]
    for x in r["rows"]:
        assert x["single_tok_s"] > 0 and x["batched_tok_s"] > 0 and 0 <= x["batched_answers_as_single"] <= 3
    assert "## llama.cpp: `smollm2-135m-instruct`" in (out / "PERF.md").read_text(encoding="utf-8")
