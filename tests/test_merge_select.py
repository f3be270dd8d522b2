"""training/merge_select.py: every candidate merge is built, scored by run_all beside its parents, and chosen by
the share of each parent's gain it keeps."""

from __future__ import annotations

import json

from training import merge_select


def _delta(d, lo):
    return {"delta": d, "lo": lo, "hi": d + 0.1, "n": 10, "se": 0.01, "mde": 0.03}


def test_the_share_kept_is_defined_only_where_the_parent_gains():
    assert merge_select.kept_share(_delta(0.1, 0.0), _delta(0.2, 0.05)) == 0.5
    assert merge_select.kept_share(_delta(-0.1, -0.2), _delta(0.2, 0.05)) == -0.5
    assert merge_select.kept_share(_delta(0.1, 0.0), _delta(0.2, -0.01)) is None   # no measurable gain to keep
    assert merge_select.kept_share(None, _delta(0.2, 0.05)) is None


def test_the_choice_is_the_largest_smallest_share():
    rows = [{"combination": "linear", "min_kept": 0.3}, {"combination": "ties", "min_kept": 0.6},
            {"combination": "cat", "min_kept": None}]
    assert merge_select.select(rows)["combination"] == "ties"
    assert merge_select.select([{"combination": "cat", "min_kept": None}]) is None


def test_a_selection_runs_end_to_end_on_tiny_llama(tiny_bench, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("BENCH_REGISTRY", str(tiny_bench.registry))
    work = tmp_path / "work"
    argv = ["--model", "tiny-llama", "--combinations", "linear", "cat", "svd", "--law-tasks", "tiny_gen:exact_match",
            "--instruct-tasks", "tiny_mc:acc", "--limit", "4", "--precision", "fp32", "--batch-size", "4",
            "--max-gen-toks", "6", "--include-path", str(tiny_bench.tasks), "--cache-dir", str(tiny_bench.cache),
            "--work-dir", str(work), "--resamples", "200"]
    assert merge_select.main(argv) == 0
    report = json.loads((work / "tiny-llama" / "selection.json").read_text())
    assert [c["combination"] for c in report["candidates"]] == ["linear", "cat", "svd"]
    linear, *built = report["candidates"]
    assert "same r" in linear["refused"] and linear["min_kept"] is None   # PEFT: linear needs equal ranks (4, 8)
    for c in built:
        assert (work / "tiny-llama" / "candidates" / c["combination"] / "adapter_config.json").is_file()
        assert set(c["deltas"]) == {"tiny_gen:exact_match", "tiny_mc:acc"} and set(c["kept"]) == {"law", "instruct"}
        assert all(d is not None and d["n"] > 0 for d in c["deltas"].values())
    assert set(report["parent_gains"]) == {"law", "instruct"}
    first = capsys.readouterr().out
    assert "chosen:" in first and "refused by PEFT" in first
    config = {c: json.loads((work / "tiny-llama" / "candidates" / c / "adapter_config.json").read_text())
              for c in ("cat", "svd")}
    assert config["cat"]["r"] == 4 + 8 and config["svd"]["r"] == 8   # the exact sum; its SVD at the larger rank
    # again: run_all keeps every finished combination, nothing is recomputed
    assert merge_select.main(argv) == 0
    again = capsys.readouterr().out
    assert again.count("kept from an earlier run") == 3   # parents, cat, svd
    assert "3 combination(s), 3 kept from an earlier run" in again and again.count("1 combination(s), 1 kept") == 2
    assert json.loads((work / "tiny-llama" / "selection.json").read_text())["candidates"] == report["candidates"]
