"""benchmark/run_all.py on tiny-llama: the matrix, results, resume, lock, bad inputs, extra task folders.

The fixtures (tests/conftest.py) build a temporary registry with tiny-llama and two
LoRA adapters saved by PEFT with random B weights, and a folder with two tiny
tasks (multiple_choice and generate_until). ``matrix_run`` is one uninterrupted
run of instruct, law and base on both tasks, in that order, so the base is
evaluated after the adapters were attached.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from benchmark import results as res
from benchmark import run_all, tasks
from benchmark.registry import REPO
from conftest import TINY_LLAMA, make_lora_adapter, run_all_args, write_mc_task, write_registry

COMBOS = ("instruct", "law", "base")


def results_of(folder: Path) -> dict:
    files = sorted(folder.glob("results_*.json"))
    assert len(files) == 1, f"{folder}: expected one results file, found {[f.name for f in files]}"
    return json.loads(files[0].read_text(encoding="utf-8"))


def samples_of(folder: Path, task: str) -> list[dict]:
    files = sorted(folder.glob(f"samples_{task}_*.jsonl"))
    assert len(files) == 1, f"{folder}: expected one samples file for {task}"
    return [json.loads(line) for line in files[0].read_text(encoding="utf-8").splitlines()]


def loglikelihoods(folder: Path, task: str = "tiny_mc") -> list[float]:
    return [choice[0][0] for s in sorted(samples_of(folder, task), key=lambda s: s["doc_id"]) for choice in s["resps"]]


def mtimes(out: Path) -> dict:
    return {str(p.relative_to(out)): p.stat().st_mtime_ns for p in out.rglob("*")
            if p.is_file() and "lm_cache" not in p.parts and p.name not in {".run_all.lock", "run_all.log"}}


# ------------------------------------------------------------------ command line ---

def test_help_lists_the_options():
    out = subprocess.run([sys.executable, "benchmark/run_all.py", "--help"], cwd=REPO, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    for option in ("--suite", "--adapters", "--tasks", "--include-path", "--limit", "--preset", "--precision",
                   "--force", "--backend", "--tensor-parallel-size", "--output-dir"):
        assert option in out.stdout


@pytest.mark.parametrize("argv, field, expected", [
    ([], "limit", run_all.DEFAULT_SAMPLE),
    (["--full"], "limit", 0),
    (["--limit", "3"], "limit", 3),
    (["--adapters", "none"], "adapters", ["base"]),
    ([], "adapters", ["base", "instruct", "law", "merged"]),
    ([], "precision", "8bit"),
    (["--include-path", "a", "--include-path", "b"], "include_path", [Path("a"), Path("b")]),
    # the batch size is measured per device (PERF.md); one given on the command line wins
    (["--device", "cpu"], "batch_size", run_all.CPU_BATCH_SIZE),
    (["--device", "cuda"], "batch_size", run_all.CUDA_BATCH_SIZE),
    (["--device", "cpu", "--batch-size", "8"], "batch_size", 8),
])
def test_parse_args(argv, field, expected):
    assert getattr(run_all.parse_args(argv), field) == expected


@pytest.mark.parametrize("argv", [["--limit"], ["--limit", "0"], ["--limit", "-2"]])
def test_limit_needs_a_number_of_documents(argv, capsys):
    with pytest.raises(SystemExit):
        run_all.parse_args(argv)
    assert "--limit" in capsys.readouterr().err


def _docs(strata: dict) -> list[dict]:
    return [{"ley": ley, "n": i} for ley, count in strata.items() for i in range(count)]


@pytest.mark.parametrize("strata, n, per_stratum", [
    ({"a": 6, "b": 3, "c": 3}, 3, {"a": 1, "b": 1, "c": 1}),
    ({"a": 6, "b": 3, "c": 3}, 6, {"a": 2, "b": 2, "c": 2}),
    ({"a": 6, "b": 1}, 4, {"a": 3, "b": 1}),      # a small stratum runs out, the others fill in
    ({"a": 2, "b": 2}, 10, {"a": 2, "b": 2}),     # n >= len: every document
    ({"a": 2, "b": 2}, 0, {"a": 2, "b": 2}),      # 0 = full split
])
def test_stratified_sample_spreads_over_strata_and_is_fixed(strata, n, per_stratum):
    docs = _docs(strata)
    picked = tasks.stratified_sample(docs, n, seed=0)
    assert picked == sorted(set(picked))
    counts = {}
    for i in picked:
        counts[docs[i]["ley"]] = counts.get(docs[i]["ley"], 0) + 1
    assert counts == per_stratum
    assert tasks.stratified_sample(docs, n, seed=0) == picked


def test_a_task_yaml_dropped_into_a_folder_is_discovered(tmp_path):
    dirs = tasks.task_dirs([tmp_path])
    before = tasks.own_root_tasks(tasks.task_manager(None, dirs), dirs)
    assert "tiny_dropped" not in before and "ecuador_law_es" in before
    write_mc_task(tmp_path, "tiny_dropped")
    after = tasks.own_root_tasks(tasks.task_manager(None, dirs), dirs)
    assert set(after) == set(before) | {"tiny_dropped"}


@pytest.mark.parametrize("names, fails", [(["tiny_ok"], False), (None, True)], ids=["named-tasks", "default-run"])
def test_a_task_yaml_that_does_not_parse_is_named(tmp_path, caplog, names, fails):
    """lm-eval would skip it silently; the runner names file and line. It fails the run when a task may be
    missing because of it (default run; an unknown requested name: see bad_inputs_run), else it is a warning."""
    write_mc_task(tmp_path, "tiny_ok")
    (tmp_path / "broken.yaml").write_text("task: tiny_broken\noutput_type: generate_until\ndoc_to_text: a: b\n")
    message = f"{tmp_path / 'broken.yaml'}: line 3, column 15 YAML syntax error"
    with caplog.at_level("WARNING", logger="benchmark"):
        tm, kept, leaves, problems = tasks.resolve_tasks(names, tasks.task_dirs([tmp_path]))
    assert "tiny_ok" in kept and "tiny_ok" in leaves and "tiny_broken" not in kept
    assert any(message in p for p in problems) == fails
    assert (message in caplog.text) == (not fails)


def test_include_path_must_be_a_folder(tmp_path):
    with pytest.raises(ValueError, match="not a folder"):
        tasks.task_dirs([tmp_path / "nope"])


# ------------------------------------------------------------------ the matrix ---

def test_matrix_runs_every_combination(matrix_run):
    assert matrix_run.rc == 0
    assert sorted(p.name for p in (matrix_run.out / "tiny-llama").iterdir()) == sorted(COMBOS)


@pytest.mark.parametrize("adapter", COMBOS)
def test_results_in_lm_eval_schema_with_checksums(matrix_run, adapter):
    folder = matrix_run.combos[adapter]
    data = results_of(folder)
    for key in ("results", "configs", "versions", "n-samples", "config"):
        assert key in data
    assert set(data["results"]) == {"tiny_mc", "tiny_gen"}
    assert "acc,none" in data["results"]["tiny_mc"] and "exact_match,none" in data["results"]["tiny_gen"]
    for task in ("tiny_mc", "tiny_gen"):
        rows = samples_of(folder, task)
        assert len(rows) == 2 and data["n-samples"][task]["effective"] == 2   # --limit 2
        assert {"doc_id", "arguments", "resps", "filtered_resps"} <= set(rows[0])
    done = json.loads((folder / "done.json").read_text())
    listed = {p.name for p in folder.glob("results_*.json")} | {p.name for p in folder.glob("samples_*.jsonl")}
    assert set(done["files"]) == listed
    for name, digest in done["files"].items():
        assert res.sha256_bytes((folder / name).read_bytes()) == digest
    assert res.is_complete(folder, done["input_hash"]) == (True, "complete")
    assert not (folder / "failed.json").exists()


@pytest.mark.parametrize("adapter", COMBOS)
def test_provenance(matrix_run, tiny_bench, adapter):
    bench = results_of(matrix_run.combos[adapter])["benchmark"]
    for key in ("registry_entry", "template", "template_hash", "preset", "preset_hash", "preset_mapping",
                "adapter_hash", "libraries", "precision", "device", "seed", "checkpoint", "input_hash", "sample",
                "truncated_prompts", "base_load"):
        assert key in bench, key
    assert (bench["model"], bench["adapter"], bench["precision"], bench["device"]) == ("tiny-llama", adapter, "fp32", "cpu")
    assert bench["template"] == "templates/Llama-v2-es.yaml"
    assert bench["template_hash"] == res.hash_paths([REPO / "templates" / "Llama-v2-es.yaml"])
    assert bench["libraries"]["torch"] and bench["libraries"]["lm_eval"] and bench["libraries"]["peft"]
    import torch

    assert bench["host"]["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert bench["host"]["torch_threads"] == torch.get_num_threads() and bench["host"]["cpu"]
    if adapter == "base":
        assert bench["adapter_hash"] is None and bench["preset"] == "Llama2-seed"
    else:
        assert bench["adapter_hash"] == res.adapter_hash(tiny_bench.adapters[adapter])
        assert bench["adapter_location"] == str(tiny_bench.adapters[adapter])
        assert bench["preset"] == ("law" if adapter == "law" else "Llama2-seed")
    assert bench["input_hash"] == json.loads((matrix_run.combos[adapter] / "done.json").read_text())["input_hash"]


def test_each_base_is_loaded_once(matrix_run, tiny_bench):
    loads = {a: results_of(matrix_run.combos[a])["benchmark"]["base_load"]["id"] for a in COMBOS}
    assert len(set(loads.values())) == 1, loads
    assert {results_of(matrix_run.combos[a])["benchmark"]["checkpoint"] for a in COMBOS} == {str(tiny_bench.fp32)}


def test_adapters_are_attached_and_switched(matrix_run):
    scores = {a: loglikelihoods(matrix_run.combos[a]) for a in COMBOS}
    for a, b in (("instruct", "law"), ("instruct", "base"), ("law", "base")):
        assert max(abs(x - y) for x, y in zip(scores[a], scores[b])) > 1e-3, f"{a} and {b} score the same"
    gens = {a: [s["filtered_resps"] for s in samples_of(matrix_run.combos[a], "tiny_gen")] for a in COMBOS}
    assert gens["instruct"] != gens["base"] and gens["law"] != gens["base"]


def test_base_after_adapters_equals_base_alone(matrix_run, tiny_bench, tmp_path, run_all_inprocess):
    """The base row was evaluated after two adapters were attached: it must equal a fresh base model's."""
    rc = run_all_inprocess(tiny_bench.registry, run_all_args(tiny_bench, tmp_path, tasks=["tiny_mc"], adapters=["base"]))
    assert rc == 0
    assert loglikelihoods(tmp_path / "tiny-llama" / "base") == pytest.approx(
        loglikelihoods(matrix_run.combos["base"]), abs=1e-4)


# ------------------------------------------------------------------ resume ---

@pytest.fixture
def results_copy(matrix_run, tmp_path):
    out = tmp_path / "results"
    shutil.copytree(matrix_run.out, out)
    return out


@pytest.fixture
def restore_files():
    """Edit fixture files in place for one test; their bytes are put back afterwards."""
    saved = {}

    def remember(*paths):
        for path in paths:
            for f in ([path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]):
                saved.setdefault(f, f.read_bytes())

    yield remember
    for f, data in saved.items():
        f.write_bytes(data)


def test_rerun_with_nothing_changed_loads_no_model(results_copy, tiny_bench, run_all_inprocess, monkeypatch, capsys):
    import benchmark.loading

    def no_loading(*args, **kwargs):
        raise AssertionError("a model was loaded although every combination is complete")

    monkeypatch.setattr(benchmark.loading, "load_for_eval", no_loading)
    before = mtimes(results_copy)
    assert run_all_inprocess(tiny_bench.registry, run_all_args(tiny_bench, results_copy)) == 0
    assert mtimes(results_copy) == before
    out = capsys.readouterr().out
    assert "0 failed" in out
    # The summary still gives each combination's time, and their sum, from when they were computed.
    records = [res.load_results(p.parent)["benchmark"] for p in sorted(results_copy.rglob("done.json"))]
    assert len(records) >= 2 and all(r["seconds"] > 0 for r in records)
    total = sum(r["seconds"] for r in records) / 60
    loads = {r["base_load"]["id"]: r["base_load"]["seconds"] for r in records}
    assert (f"kept ones included: {total:.1f} min, plus {sum(loads.values()) / 60:.1f} min loading base models "
            f"({len(loads)} load(s))") in out
    for r in records:
        assert re.search(rf"{re.escape(r['model'])}\s+{r['adapter']}\s+{r['seconds'] / 60:.1f}\s", out), out


def test_progress_one_bar_for_the_matrix_and_one_per_task_with_an_eta(tiny_bench, tmp_path, run_all_inprocess,
                                                                      capsys):
    argv = run_all_args(tiny_bench, tmp_path / "results", adapters=("instruct", "base"))
    assert run_all_inprocess(tiny_bench.registry, argv) == 0
    err = capsys.readouterr().err
    eta = r"\[\d\d:\d\d<\d\d:\d\d"   # tqdm's [elapsed<remaining]
    assert re.search(rf"combinations: 100%.*2/2 {eta}", err), err
    # per combination: tiny_mc's 2 documents x 4 choices, tiny_gen's 2 answers
    assert len(re.findall(rf"tiny_mc \(loglikelihood\): 100%.*8/8 {eta}", err)) == 2, err
    assert len(re.findall(rf"tiny_gen \(generate_until\): 100%.*2/2 {eta}", err)) == 2, err


def test_library_messages_go_to_the_log_file_not_the_terminal(tiny_bench, tmp_path, run_all_inprocess, capsys):
    import logging

    def noisy_evaluate(*args, **kwargs):
        logging.getLogger("lm_eval.api.task").warning("tiny_mc: Custom kwargs can be passed to `--metadata`")
        return real(*args, **kwargs)

    real = run_all._evaluate
    run_all._evaluate = noisy_evaluate
    try:
        argv = run_all_args(tiny_bench, tmp_path / "results", adapters=("base",))
        assert run_all_inprocess(tiny_bench.registry, argv) == 0
    finally:
        run_all._evaluate = real
    out = capsys.readouterr()
    log_file = tmp_path / "results" / "run_all.log"
    assert "Custom kwargs" not in out.err + out.out
    assert "Custom kwargs" in log_file.read_text()
    assert f"library messages (lm-eval, transformers, bitsandbytes, warnings): {log_file}" in out.out


def test_changed_preset_and_corrupt_results_recompute_only_those(results_copy, tiny_bench, run_all_inprocess,
                                                                  restore_files, caplog):
    before = mtimes(results_copy)
    old_base = results_of(results_copy / "tiny-llama" / "base")
    restore_files(tiny_bench.law_preset)
    with tiny_bench.law_preset.open("a") as handle:
        handle.write("# edited\n")
    base_results = next((results_copy / "tiny-llama" / "base").glob("results_*.json"))
    base_results.write_bytes(base_results.read_bytes()[:200])          # truncated on disk
    with caplog.at_level("INFO", logger="benchmark"):
        assert run_all_inprocess(tiny_bench.registry, run_all_args(tiny_bench, results_copy)) == 0
    after = mtimes(results_copy)
    assert {k: v for k, v in after.items() if k.startswith("tiny-llama/instruct")} == \
           {k: v for k, v in before.items() if k.startswith("tiny-llama/instruct")}
    for combo in ("law", "base"):
        key = f"tiny-llama/{combo}/done.json"
        assert after[key] != before[key]
    assert "tiny-llama/law: recomputing (inputs changed)" in caplog.text
    assert f"tiny-llama/base: recomputing ({base_results.name} missing or corrupted)" in caplog.text
    new_base = results_of(results_copy / "tiny-llama" / "base")
    assert new_base["results"] == old_base["results"]


def test_another_batch_size_recomputes_instead_of_reusing_answers(results_copy, tiny_bench, run_all_inprocess,
                                                                   caplog):
    """Answers of one batch size are not reused under another (8-bit answers depend on the batch)."""
    before = mtimes(results_copy)
    argv = run_all_args(tiny_bench, results_copy, adapters=("base",))
    argv[argv.index("--batch-size") + 1] = "2"
    with caplog.at_level("INFO", logger="benchmark"):
        assert run_all_inprocess(tiny_bench.registry, argv) == 0
    assert mtimes(results_copy)["tiny-llama/base/done.json"] != before["tiny-llama/base/done.json"]
    assert "tiny-llama/base: recomputing (inputs changed)" in caplog.text
    bench = results_of(results_copy / "tiny-llama" / "base")["benchmark"]
    assert (bench["batch_size"], bench["device"]) == (2, "cpu")


def test_changed_adapter_weights_recompute_that_combo_with_new_scores(results_copy, tiny_bench, run_all_inprocess,
                                                                       restore_files):
    before = mtimes(results_copy)
    old_scores = loglikelihoods(results_copy / "tiny-llama" / "instruct")
    restore_files(tiny_bench.adapters["instruct"])
    make_lora_adapter(tiny_bench.fp32, tiny_bench.adapters["instruct"], seed=7, r=4)
    assert run_all_inprocess(tiny_bench.registry, run_all_args(tiny_bench, results_copy)) == 0
    after = mtimes(results_copy)
    for combo in ("law", "base"):
        assert {k: v for k, v in after.items() if k.startswith(f"tiny-llama/{combo}/")} == \
               {k: v for k, v in before.items() if k.startswith(f"tiny-llama/{combo}/")}
    assert after["tiny-llama/instruct/done.json"] != before["tiny-llama/instruct/done.json"]
    # New weights, new scores: nothing came from the old combination's response cache.
    new_scores = loglikelihoods(results_copy / "tiny-llama" / "instruct")
    assert max(abs(a - b) for a, b in zip(old_scores, new_scores)) > 1e-3
    assert len(list((results_copy / "tiny-llama" / "instruct" / "lm_cache").iterdir())) == 1


def test_writing_an_adapters_training_card_keeps_its_results(results_copy, tiny_bench, run_all_inprocess,
                                                              monkeypatch, restore_files):
    """`benchmark.compare --write-cards` puts a run's scores into the adapter's README.md: that must not make
    the same run stale. Only the card is excluded: the weights test above still recomputes."""
    import benchmark.loading

    folder = tiny_bench.adapters["law"]
    card = {name: folder / name for name in res.CARD_FILES}
    restore_files(folder)
    created = [p for p in card.values() if not p.exists()]
    before_hash = res.adapter_hash(folder)
    try:
        card["README.md"].write_text("# card\n\n## Evaluation\n\n| chrF++ | 99 |\n", encoding="utf-8")
        card["training_stats.json"].write_text('{"steps": 3}', encoding="utf-8")
        card["loss_curve.png"].write_bytes(b"\x89PNG not really")
        assert res.adapter_hash(folder) == before_hash
        monkeypatch.setattr(benchmark.loading, "load_for_eval",
                            lambda *a, **k: (_ for _ in ()).throw(AssertionError("recomputed after a card edit")))
        before = mtimes(results_copy)
        assert run_all_inprocess(tiny_bench.registry, run_all_args(tiny_bench, results_copy)) == 0
        assert mtimes(results_copy) == before
        (folder / "adapter_config.json").write_text((folder / "adapter_config.json").read_text() + "\n")
        assert res.adapter_hash(folder) != before_hash   # what it computes with is still hashed
    finally:
        for p in created:
            p.unlink(missing_ok=True)


def test_force_recomputes(results_copy, tiny_bench, run_all_inprocess):
    before = mtimes(results_copy)
    old = results_of(results_copy / "tiny-llama" / "base")
    argv = run_all_args(tiny_bench, results_copy, "--force", adapters=["base"])
    assert run_all_inprocess(tiny_bench.registry, argv) == 0
    after = mtimes(results_copy)
    assert after["tiny-llama/base/done.json"] != before["tiny-llama/base/done.json"]
    assert after["tiny-llama/law/done.json"] == before["tiny-llama/law/done.json"]   # not selected
    assert not list((results_copy / "tiny-llama" / "base").glob("failed.json"))
    new = results_of(results_copy / "tiny-llama" / "base")
    assert new["benchmark"]["base_load"]["id"] != old["benchmark"]["base_load"]["id"]   # really recomputed
    assert new["results"] == old["results"]


# ------------------------------------------------------------------ refusals before any work ---

def test_second_run_on_the_same_folder_is_refused(tiny_bench, tmp_path, run_all_inprocess, capsys):
    with res.RunLock(tmp_path):
        rc = run_all_inprocess(tiny_bench.registry, run_all_args(tiny_bench, tmp_path))
    assert rc == 2
    err = capsys.readouterr().err
    assert "in use by another run_all" in err and f"pid {os.getpid()}" in err
    assert not (tmp_path / "tiny-llama").exists()
    with res.RunLock(tmp_path):   # released by the first holder: can be taken again
        pass


def _under_a_file(tmp_path):
    (tmp_path / "a-file").write_text("x")
    return tmp_path / "a-file" / "results"


@pytest.mark.parametrize("make_path", [_under_a_file, lambda tmp_path: Path("/proc/self/results")],
                         ids=["under-a-regular-file", "in-proc"])
def test_unwritable_output_folder_is_refused_before_work(tiny_bench, tmp_path, run_all_inprocess, capsys, make_path):
    out = make_path(tmp_path)
    rc = run_all_inprocess(tiny_bench.registry, run_all_args(tiny_bench, out))
    assert rc == 2
    err = capsys.readouterr().err
    assert "is not writable" in err and str(out) in err


# ------------------------------------------------------------------ bad inputs ---

@pytest.fixture(scope="module")
def bad_inputs_run(tiny_bench, tmp_path_factory, run_all_inprocess):
    """tiny-llama: instruct = corrupt safetensors, law = good, merged = trained on tiny-mistral;
    tiny-mistral: instruct = missing folder. Tasks: tiny_mc, a task name that does not exist, and a
    task YAML that does not parse in the include folder."""
    import io
    from contextlib import redirect_stderr, redirect_stdout

    root = tmp_path_factory.mktemp("bad-inputs")
    corrupt = shutil.copytree(tiny_bench.adapters["instruct"], root / "corrupt")
    (corrupt / "adapter_model.safetensors").write_bytes(os.urandom(2048))
    other_base = shutil.copytree(tiny_bench.adapters["law"], root / "other-base")
    config = json.loads((other_base / "adapter_config.json").read_text())
    (other_base / "adapter_config.json").write_text(json.dumps({**config, "base_model_name_or_path": "tiny-mistral"}))
    llama = {**TINY_LLAMA, "adapters": {
        "instruct": {"path": str(corrupt)},
        "law": {"path": str(tiny_bench.adapters["law"]), "preset": str(tiny_bench.law_preset)},
        "merged": {"path": str(other_base)}}}
    mistral = {**TINY_LLAMA, "display_name": "tiny random Mistral",
               "source": {**TINY_LLAMA["source"], "config": {**TINY_LLAMA["source"]["config"], "model_type": "mistral"}},
               "architecture": "mistral", "template": "templates/Mistral-es.yaml", "preset": "presets/Mistral-seed.yaml",
               "adapters": {"instruct": {"path": str(root / "never-trained")}}}
    registry = write_registry(root / "registry.yaml", {"tiny-llama": llama, "tiny-mistral": mistral},
                              ["tiny-llama", "tiny-mistral"])
    tasks = root / "tasks"
    write_mc_task(tasks, "tiny_mc")
    (tasks / "broken.yaml").write_text("task: tiny_broken\noutput_type: generate_until\ndoc_to_text: a: b\n")
    out = root / "results"
    argv = run_all_args(tiny_bench, out, tasks=["tiny_mc", "no_such_task"],
                        adapters=["base", "instruct", "law", "merged"], include=tasks)
    stdout, stderr = io.StringIO(), io.StringIO()
    with redirect_stdout(stdout), redirect_stderr(stderr):
        rc = run_all_inprocess(registry, argv)
    from types import SimpleNamespace
    return SimpleNamespace(rc=rc, out=out, stdout=stdout.getvalue(), tasks=tasks)


def test_bad_inputs_fail_with_non_zero_status(bad_inputs_run):
    assert bad_inputs_run.rc == 1


@pytest.mark.parametrize("combo, message", [
    ("tiny-llama/instruct", "adapter 'tiny-llama/instruct': {path} is not a readable safetensors file"),
    ("tiny-llama/merged", "adapter 'tiny-llama/merged' was trained on 'tiny-mistral', not on 'tiny-llama'"),
    ("tiny-mistral/instruct", "adapter 'tiny-mistral/instruct': no trained adapter at {path}; make it with: "),
])
def test_bad_adapter_is_a_clear_error_naming_it(bad_inputs_run, combo, message):
    folder = bad_inputs_run.out / combo
    assert not (folder / "done.json").exists()
    error = json.loads((folder / "failed.json").read_text())["error"]
    path = {"tiny-llama/instruct": bad_inputs_run.out.parent / "corrupt" / "adapter_model.safetensors",
            "tiny-llama/merged": None, "tiny-mistral/instruct": bad_inputs_run.out.parent / "never-trained"}[combo]
    assert message.format(path=path) in error
    assert f"FAILED {combo}: " in bad_inputs_run.stdout


def test_a_missing_adapter_fails_before_its_base_is_loaded(tiny_bench, tmp_path, run_all_inprocess, monkeypatch,
                                                          capsys):
    import benchmark.loading

    def no_loading(*args, **kwargs):
        raise AssertionError("the base was loaded for an adapter that does not exist")

    monkeypatch.setattr(benchmark.loading, "load_for_eval", no_loading)
    llama = {**TINY_LLAMA, "adapters": {"law": {"path": str(tmp_path / "never-trained")}}}
    registry = write_registry(tmp_path / "registry.yaml", {"tiny-llama": llama}, ["tiny-llama"])
    assert run_all_inprocess(registry, run_all_args(tiny_bench, tmp_path / "out", adapters=["law"])) == 1
    error = json.loads((tmp_path / "out" / "tiny-llama" / "law" / "failed.json").read_text())["error"]
    assert f"no trained adapter at {tmp_path / 'never-trained'}" in error
    assert "FAILED tiny-llama/law" in capsys.readouterr().out


@pytest.mark.parametrize("combo", ["tiny-llama/base", "tiny-llama/law", "tiny-mistral/base"])
def test_the_other_combinations_go_on(bad_inputs_run, matrix_run, combo):
    folder = bad_inputs_run.out / combo
    ok, why = res.is_complete(folder, json.loads((folder / "done.json").read_text())["input_hash"])
    assert ok, why
    assert set(results_of(folder)["results"]) == {"tiny_mc"}
    if combo.startswith("tiny-llama"):   # the corrupt adapter before it left the model untouched
        assert loglikelihoods(folder) == pytest.approx(loglikelihoods(matrix_run.combos[combo.split("/")[1]]), abs=1e-4)


@pytest.mark.parametrize("expected", [
    "ERROR unknown task 'no_such_task'",
    "broken.yaml: line 3, column 15 YAML syntax error",    # the file and the line

])
def test_bad_tasks_are_reported_and_the_good_one_runs(bad_inputs_run, expected):
    assert expected in bad_inputs_run.stdout


# ------------------------------------------------------------------ vLLM backend ---

@pytest.mark.parametrize("precision, expected", [
    ("bf16", {"dtype": "bfloat16"}),
    ("fp32", {"dtype": "float32"}),
    ("4bit", {"dtype": "auto", "quantization": "bitsandbytes"}),
])
def test_vllm_precisions_are_what_they_say(precision, expected):
    pytest.importorskip("vllm", reason="the vLLM backend's own environment (scripts/setup.sh --vllm) runs this")
    from benchmark.vllm_backend import vllm_precision_args

    assert vllm_precision_args(precision) == expected


def test_vllm_has_no_8bit_and_says_so():
    pytest.importorskip("vllm", reason="the vLLM backend's own environment (scripts/setup.sh --vllm) runs this")
    from benchmark.vllm_backend import vllm_precision_args

    with pytest.raises(ValueError, match="vLLM's bitsandbytes quantization is 4-bit"):
        vllm_precision_args("8bit")


@pytest.mark.parametrize("preset, expected", [
    ("Deterministic", {"temperature": 0.0}),
    ("Llama2-seed", {"temperature": 0.5, "top_p": 0.3, "top_k": 40, "seed": 7, "repetition_penalty": 1.25}),
])
def test_presets_become_vllm_sampling_params(preset, expected):
    from benchmark.presets import find_preset

    assert find_preset(preset).vllm_sampling_kwargs(seed=7) == expected


@pytest.mark.parametrize("preset, message", [
    ("Contrastive Search", "contrastive search\\) cannot run on vLLM"),
    ("Falcon-seed", "num_beams, length_penalty has no vLLM equivalent"),
])
def test_presets_vllm_cannot_run_are_refused(preset, message):
    from benchmark.presets import PresetError, find_preset

    with pytest.raises(PresetError, match=message):
        find_preset(preset).vllm_sampling_kwargs()


def test_vllm_backend_without_vllm_is_a_recorded_failure(tiny_bench, tmp_path, run_all_inprocess, monkeypatch):
    """Without vLLM in the environment every combination fails with the set-up hint; nothing crashes."""
    import builtins

    real_import = builtins.__import__

    def no_vllm(name, *args, **kwargs):
        if name.startswith("vllm") or name.startswith("lm_eval.models.vllm"):
            raise ImportError(f"No module named '{name}'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_vllm)
    monkeypatch.delitem(sys.modules, "benchmark.vllm_backend", raising=False)
    rc = run_all_inprocess(tiny_bench.registry,
                           run_all_args(tiny_bench, tmp_path, "--backend", "vllm", tasks=["tiny_mc"], adapters=["base"]))
    assert rc == 1
    error = json.loads((tmp_path / "tiny-llama" / "base" / "failed.json").read_text())["error"]
    assert "scripts/setup.sh --vllm" in error


# ------------------------------------------------------------------ a new task reaches the page ---

def test_new_task_appears_in_the_next_default_run_and_on_the_page(tiny_bench, tmp_path, run_all_inprocess):
    """No --tasks: every task under tasks/ plus the include folder, where a new task YAML was just dropped."""
    include = tmp_path / "more_tasks"
    write_mc_task(include, "tiny_nuevo")
    page = tmp_path / "index.html"
    argv = run_all_args(tiny_bench, tmp_path / "results", "--leaderboard", str(page), "--limit", "1",
                        tasks=None, adapters=["base"], include=include)
    assert run_all_inprocess(tiny_bench.registry, argv) == 0
    data = results_of(tmp_path / "results" / "tiny-llama" / "base")
    assert {"tiny_nuevo", "ecuador_law_es", "instruct_es"} <= set(data["results"])
    html = page.read_text(encoding="utf-8")
    assert "tiny_nuevo" in html and "ecuador_law_es" in html


def test_a_throwaway_task_with_unseen_metrics_reaches_the_page_with_their_directions(tiny_bench, tmp_path,
                                                                                     run_all_inprocess):
    """A task folder whose metrics no code of the page names (one lower-is-better): column, metrics, Δ."""
    import json as _json

    from conftest import TINY_GEN_DOCS, write_jsonl

    folder = tmp_path / "desechable"
    data = write_jsonl(folder / "data" / "docs.jsonl", TINY_GEN_DOCS)
    (folder / "utils.py").write_text(
        "def process_results(doc, results):\n"
        "    answer = (results[0] or '').strip()\n"
        "    return {'coincidencia_rara': float(doc['respuesta'].lower() in answer.lower()),\n"
        "            'palabras_de_mas': float(len(answer.split()))}\n", encoding="utf-8")
    (folder / "tarea_desechable.yaml").write_text(
        f"task: tarea_desechable\ndataset_path: json\ndataset_kwargs:\n  data_files:\n    test: {data}\n"
        "test_split: test\noutput_type: generate_until\ndoc_to_text: \"{{pregunta}}\"\ndoc_to_target: respuesta\n"
        "generation_kwargs:\n  until: [\"\\n\\n\"]\n  do_sample: false\n  max_gen_toks: 8\n"
        "process_results: !function utils.process_results\n"
        "metric_list:\n  - metric: coincidencia_rara\n    aggregation: mean\n    higher_is_better: true\n"
        "  - metric: palabras_de_mas\n    aggregation: mean\n    higher_is_better: false\nmetadata:\n  version: 1.0\n",
        encoding="utf-8")
    page = tmp_path / "index.html"
    argv = run_all_args(tiny_bench, tmp_path / "results", "--leaderboard", str(page), "--published",
                        str(tmp_path / "nothing-published"), "--full", tasks=["tarea_desechable"],
                        adapters=["base", "law"], include=folder)
    assert run_all_inprocess(tiny_bench.registry, argv) == 0
    html = page.read_text(encoding="utf-8")
    blob = re.search(r'<script type="application/json" id="data">(.*?)</script>', html, re.S).group(1)
    data = _json.loads(blob)
    (task,) = data["tasks"]
    assert task["name"] == "tarea_desechable" and task["metric"] == "coincidencia_rara"
    assert {m["name"]: m["higher_is_better"] for m in task["metrics"]} == {"coincidencia_rara": True,
                                                                           "palabras_de_mas": False}
    law = next(r for r in data["rows"] if r["adapter"] == "law")
    cell = law["cells"]["tarea_desechable"]
    assert cell["n"] == len(TINY_GEN_DOCS) and cell["metrics"]["palabras_de_mas"]["delta"]["n"] == len(TINY_GEN_DOCS)
    assert html.count('class="chart delta-chart"') == 1   # the adapter's difference is charted
