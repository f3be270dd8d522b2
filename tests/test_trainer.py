"""training/: the QLoRA trainer, resume, merge, the recipes and the multi-GPU configs.

The trainer really trains here, on the CPU, a few steps at a time: each tiny
architecture smoke model (random weights, the seed models' module names) on a
handful of repeated examples with a high learning rate, so the loss must fall,
and SmolLM2-135M-Instruct with its committed recipe on 4 law pairs for 2 epochs.
``trained(model)`` trains each model once per module; the tests read its
adapter folder, its checkpoints and its card.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from benchmark.registry import REPO, load_registry
from training import merge as merge_mod
from training import train

TINY = ("tiny-mistral", "tiny-llama", "tiny-falcon")
SMOLLM2 = "smollm2-135m-instruct"
STEPS = {**dict.fromkeys(TINY, 6), SMOLLM2: 4}   # 2 steps an epoch; SmolLM2 takes ~10 s a step on 2 free cores
SEED_RECIPES = sorted(p.relative_to(REPO).as_posix() for m in ("mistral-7b", "llama-2-7b-chat", "falcon-7b")
                      for p in (REPO / "training" / "recipes" / m).glob("*.yaml"))
ACCELERATE = {name: REPO / "training" / "accelerate" / f"{name}.yaml" for name in ("ddp", "fsdp", "deepspeed_zero3")}
LAW_FILE = "tasks/ecuador_law_es/data/train/constitucion.jsonl"   # committed, for argument-parsing tests

LAW_PAIRS = [   # a few short pairs, repeated over the epochs: the loss must fall
    {"pregunta": "¿Cuál es la capital del Ecuador?", "respuesta": "Quito, según el artículo 4."},
    {"pregunta": "¿Cuántos días de vacaciones tiene un trabajador?", "respuesta": "Quince días cada año."},
    {"pregunta": "¿Desde qué edad se puede votar?", "respuesta": "Desde los dieciséis años."},
    {"pregunta": "¿Quién interpreta la Constitución?", "respuesta": "La Corte Constitucional."},
]
CHATS = [
    {"messages": [{"role": "user", "content": "Dime un color."}, {"role": "assistant", "content": "Azul."}]},
    {"messages": [{"role": "user", "content": "Tengo dos manzanas."}, {"role": "assistant", "content": "Bien."},
                  {"role": "user", "content": "¿Y si como una?"}, {"role": "assistant", "content": "Te queda una."}]},
]


def write_jsonl(path: Path, rows) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def tiny_recipe(data: Path, **fields) -> dict:
    """A QLoRA recipe for a smoke model: 4 examples, batch 2, 3 epochs = 6 steps, a checkpoint every 3."""
    return {"model": "tiny-llama", "adapter": "law", "data_files": [str(data)],
            "load_in_4bit": True, "bnb_4bit_quant_type": "nf4", "use_bnb_nested_quant": True,
            "use_peft": True, "lora_r": 8, "lora_alpha": 16, "lora_dropout": 0.1,   # targets: the registry's
            "learning_rate": 2.0e-2, "lr_scheduler_type": "constant", "num_train_epochs": 3,
            "per_device_train_batch_size": 2, "max_length": 128, "optim": "adamw_torch",
            "logging_steps": 1, "save_steps": 3, "report_to": "none", "seed": 42,
            "dataloader_num_workers": 0, "include_num_input_tokens_seen": True, **fields}


def run_trainer(folder: Path, recipe: dict | str, *extra: str, cache: Path) -> SimpleNamespace:
    """training.train.main on a recipe (a dict written to ``folder`` or a recipe path) with output in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    if isinstance(recipe, dict):
        path = folder / "recipe.yaml"
        path.write_text(yaml.safe_dump(recipe, allow_unicode=True), encoding="utf-8")
        recipe = str(path)
    run = SimpleNamespace(checkpoints=folder / "checkpoints", adapter=folder / "adapter")
    train.main(["--recipe", recipe, "--output_dir", str(run.checkpoints), "--adapter_dir", str(run.adapter),
                "--cache_dir", str(cache), *extra])
    run.stats = json.loads((run.adapter / "training_stats.json").read_text())
    state = json.loads(max(run.checkpoints.glob("checkpoint-*/trainer_state.json"),
                           key=lambda p: int(p.parent.name.split("-")[1])).read_text())
    run.losses = [e["loss"] for e in state["log_history"] if "loss" in e]
    return run


def lora_tensors(adapter: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(adapter / "adapter_model.safetensors"))


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("trainer")


@pytest.fixture(scope="module")
def data(workdir) -> SimpleNamespace:
    return SimpleNamespace(law=write_jsonl(workdir / "law.jsonl", LAW_PAIRS),
                           chat=write_jsonl(workdir / "chat.jsonl", CHATS))


@pytest.fixture(scope="module")
def trained(workdir, data, bench_cache):
    """trained(model) -> the run (adapter folder, checkpoints, losses, stats), trained once per module."""
    runs = {}

    def get(model: str) -> SimpleNamespace:
        if model not in runs:
            if model == SMOLLM2:   # the committed recipe, cut to 4 law pairs x 2 epochs, lr 1e-3 constant
                runs[model] = run_trainer(   # (max_length: the task's prompt and an answer fit in 384 tokens)
                    workdir / model, "training/recipes/smollm2-135m-instruct/law.yaml", "--max_examples", "4",
                    "--per_device_train_batch_size", "2", "--max_steps", str(STEPS[model]), "--max_length", "384",
                    "--learning_rate", "1e-3", "--lr_scheduler_type", "constant", "--warmup_steps", "0",
                    "--activation_checkpointing", "False", "--logging_steps", "1", "--save_steps", "100",
                    "--checkpoint_store", "", cache=bench_cache)   # never the repository's store
            else:
                runs[model] = run_trainer(workdir / model, tiny_recipe(data.law, model=model), cache=bench_cache)
        return runs[model]

    return get


@pytest.fixture(scope="module")
def tiny_instruct(workdir, data, bench_cache) -> SimpleNamespace:
    """A second tiny-llama adapter, 'instruct', trained on chat rows (multi-turn included): merge's other input."""
    recipe = tiny_recipe(data.chat, adapter="instruct", num_train_epochs=1, save_steps=100)
    return run_trainer(workdir / "tiny-llama-instruct", recipe, cache=bench_cache)


# ----------------------------------------------------------------------- training ---

@pytest.mark.parametrize("model", [*TINY, SMOLLM2])
def test_trains_and_the_loss_goes_down(trained, model):
    run = trained(model)
    assert run.stats["steps"] == len(run.losses) == STEPS[model]
    first, last = sum(run.losses[:2]) / 2, sum(run.losses[-2:]) / 2   # first and last epoch (2 steps), same examples
    assert last < first - 0.05, f"{model}: loss {run.losses} did not go down"
    assert run.stats["first_loss"] == pytest.approx(run.losses[0])
    assert run.stats["final_loss"] == pytest.approx(run.losses[-1])


@pytest.mark.parametrize("model", [*TINY, SMOLLM2])
def test_adapter_folder_has_the_peft_layout_and_a_card(trained, bench_cache, model):
    run = trained(model)
    entry = load_registry().model(model)
    files = {p.name for p in run.adapter.iterdir()}
    assert {"adapter_config.json", "adapter_model.safetensors", "tokenizer_config.json", "README.md",
            "training_stats.json", "loss_curve.png"} <= files
    assert (run.adapter / "loss_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    config = json.loads((run.adapter / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == model
    recipe_targets = yaml.safe_load((REPO / "training/recipes/smollm2-135m-instruct/law.yaml").read_text()).get(
        "lora_target_modules") if model == SMOLLM2 else None
    assert set(config["target_modules"]) == set(recipe_targets or entry.lora_target_modules)   # recipe, else registry
    assert any(".lora_A." in k for k in lora_tensors(run.adapter))
    stats = run.stats
    assert stats["model"] == model and stats["adapter"] == "law"
    assert stats["tokens_seen"] > 0 and stats["tokens_per_second"] > 0 and stats["wall_seconds"] > 0
    # padding is counted in tokens_seen, not in tokens_trained
    assert 0 < stats["tokens_trained"] <= stats["tokens_seen"] and stats["trained_tokens_per_second"] > 0
    assert stats["peak_rss_mb"] > 100
    assert stats["device"].startswith("CPU ") and f"{os.cpu_count()} cores" in stats["device"]
    # The recipe's hash at training time, so the card's Reproduce command can be checked against the repo.
    from benchmark.loading import sha256_file

    [(recipe, digest)] = stats["recipe"].items()
    assert digest == sha256_file(Path(recipe)) and "sha256" in (run.adapter / "README.md").read_text()
    assert [e["loss"] for e in stats["log_history"] if "loss" in e] == pytest.approx(run.losses)
    assert all(len(h) == 64 for h in stats["data_files"].values())
    card = (run.adapter / "README.md").read_text(encoding="utf-8")
    assert f"`{model}`" in card and "![loss curve](loss_curve.png)" in card
    assert "python -m training.train --recipe" in card and str(stats["final_loss"]) in card
    hyper = json.loads(card.split("## Hyperparameters")[1].split("```json")[1].split("```")[0])
    assert hyper["lora"]["lora_r"] == config["r"] and "warmup_steps" in hyper["sft"]
    # the tokenizer carries the template evaluation uses
    from transformers import AutoTokenizer

    from benchmark.templates import load_template
    tokenizer = AutoTokenizer.from_pretrained(run.adapter)
    messages = [{"role": "user", "content": "Hola"}]
    assert tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True) == \
        load_template(entry.template).render(messages, add_generation_prompt=True)
    # ...and encodes as the prepared base's tokenizer does, from a compact (unindented) tokenizer.json
    base = AutoTokenizer.from_pretrained(bench_cache / model / "fp32")
    text = "¿Cuál es el plazo? Según el artículo 55, cinco años. 🙂"
    assert tokenizer(text).input_ids == base(text).input_ids
    written = (run.adapter / "tokenizer.json").read_text(encoding="utf-8")
    assert "\n" not in written and json.loads(written)["model"]["vocab"]


@pytest.mark.parametrize("model", ["tiny-falcon", SMOLLM2])
def test_adapter_reloads_with_peft_on_the_prepared_checkpoint(trained, bench_cache, model):
    """The lm-eval path: ``--model hf --model_args pretrained=<prepared>,peft=<adapter>``."""
    import torch
    from lm_eval.models.huggingface import HFLM
    from peft import PeftModel

    from benchmark.loading import prepare

    run = trained(model)
    folder = prepare(load_registry().model(model), bench_cache, precisions=("fp32",))["fp32"]
    lm = HFLM(pretrained=str(folder), peft=str(run.adapter), device="cpu", batch_size=1, dtype="float32")
    assert isinstance(lm.model, PeftModel)
    saved = lora_tensors(run.adapter)
    loaded = {k.replace(".default", ""): v for k, v in lm.model.state_dict().items() if "lora_" in k}
    assert saved.keys() == loaded.keys()
    assert all(torch.equal(saved[k], loaded[k]) for k in saved)
    ids = torch.tensor([lm.tokenizer("¿Cuál es la capital del Ecuador?").input_ids])
    with torch.no_grad():
        tuned = lm.model(ids).logits
        with lm.model.disable_adapter():
            base = lm.model(ids).logits
    assert not torch.allclose(tuned, base, atol=1e-4), "the trained adapter does not change the outputs"


def test_chat_rows_train_on_every_turn_format(tiny_instruct):
    assert tiny_instruct.stats["adapter"] == "instruct" and tiny_instruct.stats["examples"] == len(CHATS)
    assert tiny_instruct.stats["steps"] == 1 and tiny_instruct.losses[0] > 0


def test_resume_after_an_interruption_equals_an_uninterrupted_run(trained, data, workdir, bench_cache):
    """Kill after checkpoint-3 of 6 (what is left on disk: checkpoint-3), rerun the same command: same adapter."""
    import torch

    full = trained("tiny-llama")
    assert sorted(p.name for p in full.checkpoints.glob("checkpoint-*")) == ["checkpoint-3", "checkpoint-6"]
    folder = workdir / "tiny-llama-resumed"
    (folder / "checkpoints").mkdir(parents=True)
    shutil.copytree(full.checkpoints / "checkpoint-3", folder / "checkpoints" / "checkpoint-3")
    shutil.copy(full.checkpoints / train.FINGERPRINT, folder / "checkpoints" / train.FINGERPRINT)
    resumed = run_trainer(folder, tiny_recipe(data.law), cache=bench_cache)
    assert resumed.stats["resumed_from"].endswith("checkpoint-3") and resumed.stats["steps"] == 6
    assert resumed.losses[:3] == full.losses[:3]   # the history up to the checkpoint is kept
    assert resumed.losses[3:] == pytest.approx(full.losses[3:], rel=1e-4)
    a, b = lora_tensors(full.adapter), lora_tensors(resumed.adapter)
    halfway = lora_tensors(folder / "checkpoints" / "checkpoint-3")
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(b[key], a[key], rtol=1e-4, atol=1e-6)
    assert any(not torch.allclose(b[k], halfway[k]) for k in b), "the resumed run did not train"


def test_a_run_in_parts_resumes_from_the_checkpoint_store_and_equals_one_run(trained, data, workdir, bench_cache):
    """Part 1 stops after 3 steps and writes no adapter; part 2, on a machine with only the store, finishes it."""
    import torch

    full = trained("tiny-llama")
    folder, store = workdir / "tiny-llama-parts", workdir / "tiny-llama-store"
    recipe = {**tiny_recipe(data.law), "checkpoint_store": str(store)}
    folder.mkdir(parents=True)
    (folder / "recipe.yaml").write_text(yaml.safe_dump(recipe, allow_unicode=True), encoding="utf-8")
    args = ["--recipe", str(folder / "recipe.yaml"), "--output_dir", str(folder / "checkpoints"),
            "--adapter_dir", str(folder / "adapter"), "--cache_dir", str(bench_cache)]
    train.main([*args, "--part_steps", "3"])
    assert not (folder / "adapter").exists(), "an unfinished part must not write the adapter"
    assert sorted(p.name for p in store.glob("checkpoint-*")) == ["checkpoint-3"]
    assert {p.name for p in (store / "checkpoint-3").iterdir()} <= set(train.STORE_FILES)
    stored = json.loads((store / "checkpoint-3" / "adapter_config.json").read_text())
    assert stored["base_model_name_or_path"] == "tiny-llama"   # no folder of the machine that trained
    assert [(p["from_step"], p["to_step"]) for p in json.loads((store / train.PARTS).read_text())] == [(0, 3)]

    shutil.rmtree(folder / "checkpoints")            # a fresh machine: only the committed store is left
    train.main(args)
    stats = json.loads((folder / "adapter" / "training_stats.json").read_text())
    assert stats["steps"] == 6 and stats["resumed_from"].endswith("checkpoint-3")
    assert [(p["from_step"], p["to_step"]) for p in stats["parts"]] == [(0, 3), (3, 6)]
    assert stats["wall_seconds_all_parts"] == pytest.approx(sum(p["seconds"] for p in stats["parts"]), abs=0.2)
    assert sorted(p.name for p in store.glob("checkpoint-*")) == ["checkpoint-6"]
    a, b = lora_tensors(full.adapter), lora_tensors(folder / "adapter")
    for key in a:
        torch.testing.assert_close(b[key], a[key], rtol=1e-4, atol=1e-6)


def test_the_store_refuses_a_changed_recipe(data, workdir, bench_cache):
    store = workdir / "tiny-llama-store"        # written by the test above: a 6-step run at lr 2e-2
    assert any(store.glob("checkpoint-*"))
    folder = workdir / "tiny-llama-parts-changed"
    recipe = {**tiny_recipe(data.law, learning_rate=1e-3), "checkpoint_store": str(store)}
    with pytest.raises(ValueError, match="learning_rate"):
        run_trainer(folder, recipe, cache=bench_cache)


def test_lm_head_scores_only_the_completion_and_the_loss_is_unchanged(trained, data, workdir, bench_cache,
                                                                    monkeypatch):
    """The default run (compact LM head) against the same recipe with TRL's CPU behaviour (every position
    through the LM head): the LM head sees only labelled positions, and the losses and adapter are the same."""
    import torch
    import trl.trainer.utils as trl_utils

    rows = {"compact": [], "every": []}
    real = trl_utils._ChunkedLogProbFunction

    class Counting(torch.autograd.Function):   # TRL's own function, with the rows it is given counted
        @staticmethod
        def apply(hidden, weight, bias, labels, *rest):
            rows[mode].append((hidden.shape[0], int((labels != -100).sum()) if mode == "compact" else None))
            return real.apply(hidden, weight, bias, labels, *rest)

    compact_run = trained("tiny-llama")   # the module's run, without the spy: retrain both under it
    monkeypatch.setattr(trl_utils, "_ChunkedLogProbFunction", Counting)
    mode = "compact"
    compact = run_trainer(workdir / "tiny-llama-compact", tiny_recipe(data.law, save_steps=100), cache=bench_cache)
    mode = "every"
    every = run_trainer(workdir / "tiny-llama-every", tiny_recipe(data.law, save_steps=100),
                        "--lm_head_completion_only", "false", cache=bench_cache)
    assert len(rows["compact"]) == len(rows["every"]) == 6
    assert all(n == labelled for n, labelled in rows["compact"]), "prompt or padding rows reached the LM head"
    assert sum(n for n, _ in rows["compact"]) < 0.8 * sum(n for n, _ in rows["every"])
    assert compact.losses == pytest.approx(compact_run.losses, rel=1e-5)
    assert every.losses == pytest.approx(compact.losses, rel=1e-4)
    a, b = lora_tensors(compact.adapter), lora_tensors(every.adapter)
    for key in a:
        torch.testing.assert_close(b[key], a[key], rtol=1e-3, atol=1e-5)


def test_accumulation_splits_a_step_without_changing_the_run(trained, data, workdir, bench_cache):
    """Batch 1 x 2 accumulation against batch 2: the same examples per step in the same order (the length-grouped
    sampler groups by batch x accumulation) and the same losses and adapter, with half the activations.
    The SmolLM2 recipes rely on it to train under 8 GB on the CPU."""
    import torch

    whole = trained("tiny-llama")
    # no LoRA dropout here: its random masks are drawn per micro-batch, so they differ between the two
    split = run_trainer(workdir / "tiny-llama-accumulated",
                        tiny_recipe(data.law, per_device_train_batch_size=1, gradient_accumulation_steps=2,
                                    train_sampling_strategy="group_by_length", lora_dropout=0.0, save_steps=100),
                        cache=bench_cache)
    grouped = run_trainer(workdir / "tiny-llama-grouped",
                          tiny_recipe(data.law, train_sampling_strategy="group_by_length", lora_dropout=0.0,
                                      save_steps=100), cache=bench_cache)
    assert split.stats["steps"] == grouped.stats["steps"] == whole.stats["steps"]
    assert split.losses == pytest.approx(grouped.losses, rel=1e-4)
    a, b = lora_tensors(grouped.adapter), lora_tensors(split.adapter)
    for key in a:
        torch.testing.assert_close(b[key], a[key], rtol=1e-3, atol=1e-5)


def test_resume_refuses_checkpoints_of_a_changed_recipe(trained, data, workdir, bench_cache):
    """Edit the recipe, rerun into the same output_dir: a clear error names what changed; nothing is trained."""
    full = trained("tiny-llama")
    recorded = json.loads((full.checkpoints / train.FINGERPRINT).read_text())
    assert recorded["learning_rate"] == tiny_recipe(data.law)["learning_rate"] and recorded["data_files"]
    folder = workdir / "tiny-llama-edited"
    (folder / "checkpoints").mkdir(parents=True)
    shutil.copytree(full.checkpoints / "checkpoint-3", folder / "checkpoints" / "checkpoint-3")
    shutil.copy(full.checkpoints / train.FINGERPRINT, folder / "checkpoints" / train.FINGERPRINT)
    edited = tiny_recipe(data.law)
    edited["learning_rate"] = edited["learning_rate"] * 2
    with pytest.raises(ValueError, match=r"holds checkpoints of a different run \(learning_rate: .*--output_dir"):
        run_trainer(folder, edited, cache=bench_cache)
    assert not (folder / "adapter").exists()
    assert sorted(p.name for p in (folder / "checkpoints").glob("checkpoint-*")) == ["checkpoint-3"]


def test_memorization_check_answers_training_questions_with_base_and_adapter(trained, data, workdir, bench_cache,
                                                                           monkeypatch):
    """training.memorization: the base and the adapter answer the recipe's training questions, scored."""
    from training import memorization

    run = trained("tiny-llama")
    recipe = workdir / "tiny-llama-memo.yaml"
    recipe.write_text(yaml.safe_dump(tiny_recipe(data.law)), encoding="utf-8")
    monkeypatch.setenv("BENCH_CACHE", str(bench_cache))
    assert memorization.main(["--model", "tiny-llama", "--adapter", "law", "--adapter-dir", str(run.adapter),
                              "--recipe", str(recipe), "--n", "3", "--precision", "fp32",
                              "--max-new-tokens", "8", "--json", str(workdir / "memo.json")]) == 0
    report = json.loads((workdir / "memo.json").read_text(encoding="utf-8"))
    assert report["n"] == 3
    for side in ("base", "adapter_scores"):
        assert len(report[side]["outputs"]) == 3 and 0 <= report[side]["cites an article the pair cites"] <= 1
        assert report[side]["example"]["training answer"] in [p["respuesta"] for p in LAW_PAIRS]
    assert report["base"]["outputs"] != report["adapter_scores"]["outputs"], "the adapter was not applied"


def test_fact_probe_picks_taught_articles_over_the_laws():
    """training.fact_probe: articles whose visto key facts all appear in a training answer, from several laws."""
    from benchmark import lawdata
    from benchmark.lawfacts import states
    from training.fact_probe import pick_articles, probe_sets

    train_rows, test_rows = lawdata.load_split("train"), lawdata.load_split("test")
    articles = pick_articles(train_rows, test_rows, 8)
    assert articles == pick_articles(train_rows, test_rows, 8) and len(set(articles)) == 8
    assert len({law for law, _ in articles}) >= 5
    rows, scored, tests = probe_sets(train_rows, test_rows, articles)
    assert tests and all(t["conocimiento"] == "visto" for t in tests)
    for t in tests:
        taught = [r["respuesta"] for r in rows if r["ley"] == t["ley"] and t["articulos"][0] in r["articulos"]]
        assert all(any(states(a, f) for a in taught) for f in t["hechos_clave"]), t["id"]
    assert all(facts and all(states(r["respuesta"], f) for f in facts) for r, facts in scored)


def test_fact_probe_paraphrases_keep_the_answer_and_refuse_test_wording(tmp_path):
    """--paraphrases: reworded questions train with the pair's own answer; unknown ids and test n-grams fail."""
    from benchmark import lawdata
    from benchmark.lawdata import DataError
    from training.fact_probe import pick_articles, paraphrase_rows, probe_sets

    train_rows, test_rows = lawdata.load_split("train"), lawdata.load_split("test")
    rows, _, tests = probe_sets(train_rows, test_rows, pick_articles(train_rows, test_rows, 2))
    good = write_jsonl(tmp_path / "good.jsonl", [{"id": rows[0]["id"], "preguntas": ["¿Otra forma de preguntarlo?",
                                                                                   "Un caso concreto: ¿qué aplica?"]}])
    extra = paraphrase_rows(rows, good, test_rows)
    assert [r["pregunta"] for r in extra] == ["¿Otra forma de preguntarlo?", "Un caso concreto: ¿qué aplica?"]
    assert all(r["respuesta"] == rows[0]["respuesta"] and r["id"] != rows[0]["id"] for r in extra)
    unknown = write_jsonl(tmp_path / "unknown.jsonl", [{"id": "no-such-row", "preguntas": ["¿Algo?"]}])
    with pytest.raises(DataError, match="unknown.jsonl:1: field 'id'"):
        paraphrase_rows(rows, unknown, test_rows)
    leaked = write_jsonl(tmp_path / "leaked.jsonl", [{"id": rows[0]["id"], "preguntas": [tests[0]["pregunta"]]}])
    with pytest.raises(DataError, match=f"shares an 8-gram with test item {tests[0]['id']}"):
        paraphrase_rows(rows, leaked, test_rows)


def test_fact_probe_trains_on_the_articles_and_scores_base_and_adapter(data, workdir, bench_cache, monkeypatch):
    from training import fact_probe

    recipe = workdir / "tiny-llama-probe.yaml"
    recipe.write_text(yaml.safe_dump(tiny_recipe(data.law, save_steps=100)), encoding="utf-8")
    monkeypatch.setenv("BENCH_CACHE", str(bench_cache))
    out = workdir / "probe"
    assert fact_probe.main(["--model", "tiny-llama", "--recipe", str(recipe), "--articles", "2", "--epochs", "1",
                            "--output-dir", str(out), "--precision", "fp32", "--max-new-tokens", "4",
                            "--", "--max_steps", "2", "--max_length", "512"]) == 0
    report = json.loads((out / "report-fp32.json").read_text(encoding="utf-8"))
    subset = [json.loads(x) for x in (out / "train_subset.jsonl").read_text(encoding="utf-8").splitlines()]
    picked = {tuple(a.split(" ")) for a in report["articles"]}
    assert len(picked) == 2 and report["training_pairs"] == len(subset)
    assert all(any((r["ley"], a) in picked for a in r["articulos"]) for r in subset)
    assert set(report["recall"]) == {"training questions", "visto test questions"}
    for scores in report["recall"].values():
        assert scores["n"] > 0 and 0 <= scores["base"] <= 1 and 0 <= scores["adapter"] <= 1
    for name, scores in report["recall"].items():   # every answer is kept, with its own score
        for side in ("base", "adapter"):
            answers = report["answers"][name][side]
            assert len(answers) == scores["n"] and all(a["question"] and "answer" in a for a in answers)
            assert sum(a["recall"] for a in answers) / len(answers) == pytest.approx(scores[side], abs=2e-3)
    assert report["training"]["steps"] == 2
    for side in ("base", "adapter"):
        assert report["training_pairs_loss"][side]["loss"] > 0 and 0 <= report["training_pairs_loss"][side]["token_accuracy"] <= 1
    assert report["training_pairs_loss"]["base"] != report["training_pairs_loss"]["adapter"], "the adapter was not applied"
    # --eval-only --loss-only: the same adapter, reloaded, only its teacher-forced loss
    assert fact_probe.main(["--model", "tiny-llama", "--recipe", str(recipe), "--articles", "2", "--output-dir", str(out),
                            "--precision", "fp32", "--eval-only", "--loss-only"]) == 0
    again = json.loads((out / "report-fp32-loss.json").read_text(encoding="utf-8"))
    assert again["training_pairs_loss"] == report["training_pairs_loss"] and again["recall"] == {}
    assert "tasks/ecuador_law_es/utils.py:doc_to_text" in (out / "adapter" / "README.md").read_text(encoding="utf-8")


# -------------------------------------------------------------------------- merge ---

def delta_weights(base_folder: Path, adapters: dict) -> dict:
    """{adapter: {module: B @ A * scaling}} with every adapter loaded by PEFT onto one base."""
    import torch
    from peft import PeftModel
    from peft.tuners.lora import LoraLayer
    from transformers import AutoModelForCausalLM

    names = list(adapters)
    base = AutoModelForCausalLM.from_pretrained(base_folder, dtype=torch.float32)
    model = PeftModel.from_pretrained(base, str(adapters[names[0]]), adapter_name=names[0])
    for name in names[1:]:
        model.load_adapter(str(adapters[name]), adapter_name=name)
    with torch.no_grad():
        return {n: {m: layer.get_delta_weight(n) for m, layer in model.named_modules() if isinstance(layer, LoraLayer)}
                for n in names}


@pytest.mark.parametrize("combination", ["linear", "cat", "svd", "ties", "dare_linear", "magnitude_prune"])
def test_merge_builds_a_loadable_adapter_that_differs_from_both(combination, trained, tiny_instruct, workdir,
                                                                bench_cache):
    import torch

    from benchmark.loading import prepare

    law, instruct = trained("tiny-llama").adapter, tiny_instruct.adapter
    out = merge_mod.merge("tiny-llama", combination, output=workdir / f"merged-{combination}", cache_dir=bench_cache,
                          instruct=instruct, law=law)
    assert {"adapter_config.json", "adapter_model.safetensors", "tokenizer_config.json", "README.md"} <= \
        {p.name for p in out.iterdir()}
    config = json.loads((out / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == "tiny-llama"
    assert config["r"] == (16 if combination == "cat" else 8)   # svd: the larger input rank
    assert f"combination `{combination}`" in (out / "README.md").read_text()
    folder = prepare(load_registry().model("tiny-llama"), bench_cache, precisions=("fp32",))["fp32"]
    deltas = delta_weights(folder, {"merged": out, "instruct": instruct, "law": law})
    assert deltas["merged"].keys() == deltas["law"].keys()
    for module, merged in deltas["merged"].items():
        for source in ("instruct", "law"):
            assert not torch.allclose(merged, deltas[source][module], atol=1e-6), f"{module} equals {source}"
    if combination == "svd":   # the best rank-8 approximation of the exact sum: closer to it than linear's
        linear = delta_weights(folder, {"merged": merge_mod.merge("tiny-llama", "linear", output=workdir / "lin",
                                                                  cache_dir=bench_cache, instruct=instruct, law=law)})
        for module, merged in deltas["merged"].items():
            exact = deltas["instruct"][module] + deltas["law"][module]
            assert torch.dist(merged, exact) <= torch.dist(linear["merged"][module], exact) + 1e-6, module
    if combination == "cat":   # concatenation is exact: ΔW = ΔW_instruct + ΔW_law (weights 1, 1)
        for module, merged in deltas["merged"].items():
            torch.testing.assert_close(merged, deltas["instruct"][module] + deltas["law"][module],
                                       rtol=1e-4, atol=1e-6)


def test_merge_refuses_an_adapter_trained_on_another_base(trained, tiny_instruct, workdir, bench_cache):
    foreign = workdir / "foreign-instruct"
    shutil.copytree(tiny_instruct.adapter, foreign)
    config = json.loads((foreign / "adapter_config.json").read_text())
    config["base_model_name_or_path"] = "tiny-mistral"
    (foreign / "adapter_config.json").write_text(json.dumps(config))
    out = workdir / "merged-refused"
    with pytest.raises(ValueError, match=r"trained on 'tiny-mistral', not on 'tiny-llama'"):
        merge_mod.merge("tiny-llama", output=out, cache_dir=bench_cache, instruct=foreign,
                        law=trained("tiny-llama").adapter)
    assert not out.exists()


def test_merge_command_line():
    args = merge_mod.parse_args(["--model", "tiny-llama", "--combination", "ties", "--weights", "0.7", "0.3"])
    assert (args.combination, args.weights, args.density) == ("ties", [0.7, 0.3], 0.5)
    with pytest.raises(SystemExit):
        merge_mod.parse_args(["--model", "tiny-llama", "--combination", "svd-magic"])


# ---------------------------------------------------------------------- bad input ---

@pytest.mark.parametrize("fields, error, match", [
    ({"data_files": ["tasks/ecuador_law_es/data/train/no_such_law.jsonl"]}, FileNotFoundError, "no_such_law.jsonl"),
    ({"data_files": []}, ValueError, "data_files' is empty"),
    ({"adapter": "merged"}, ValueError, "built by training.merge"),
    ({"model": "tiny-gpt"}, ValueError, "unknown model 'tiny-gpt'"),
    ({"lora_target_modules": ["q_proj", "qkv_proj"]}, ValueError, r"\['qkv_proj'\] not found in the model"),
    ({"lora_target_modules": ["query_key_value"]}, ValueError, r"\['query_key_value'\] not found"),
    ({"prompt_function": "tasks/ecuador_law_es/no_utils.py:doc_to_text"}, FileNotFoundError, "no_utils.py does not exist"),
    ({"prompt_function": "tasks/ecuador_law_es/utils.py:no_such_function"}, ValueError, "has no function 'no_such_function'"),
    ({"prompt_function": "doc_to_text"}, ValueError, "is not 'FILE.py:FUNCTION'"),
])
def test_bad_recipe_fails_before_training(fields, error, match, data, tmp_path, bench_cache):
    with pytest.raises(error, match=match):
        run_trainer(tmp_path, tiny_recipe(data.law, **fields), cache=bench_cache)
    assert not (tmp_path / "checkpoints").exists() and not (tmp_path / "adapter").exists()


def test_law_pairs_train_on_the_prompt_the_task_sends(tmp_path):
    """With the task's doc_to_text as prompt_function, a training prompt is byte for byte lm-eval's request."""
    from lm_eval.tasks import TaskManager, get_task_dict

    from benchmark.templates import load_template, prompt_completion

    task = get_task_dict(["ecuador_law_es_qa_visto"],
                         TaskManager(include_path=str(REPO / "tasks")))["ecuador_law_es_qa_visto"]
    doc = task.test_docs()[0]
    template = load_template(load_registry().model(SMOLLM2).template)
    sent = task.fewshot_context(doc, 0, apply_chat_template=True,
                                chat_template=lambda msgs, add_generation_prompt=True: template.render(
                                    msgs, add_generation_prompt=add_generation_prompt))
    pair = write_jsonl(tmp_path / "pair.jsonl", [{"ley": doc["ley"], "version": doc["version"],
                                                  "pregunta": doc["pregunta"], "respuesta": doc["respuesta"]}])

    def trained_prompt(prompt_function):
        [conversation] = train.read_examples([str(pair)], "law", prompt_function)
        return prompt_completion(template, conversation)["prompt"]

    assert trained_prompt("tasks/ecuador_law_es/utils.py:doc_to_text") == sent
    assert trained_prompt("") != sent and doc["pregunta"] in trained_prompt("")   # the bare question


def test_bad_data_row_names_file_and_line(tmp_path, bench_cache):
    bad = write_jsonl(tmp_path / "bad-rows.jsonl", [LAW_PAIRS[0], {"pregunta": "¿Y la respuesta?"}])
    with pytest.raises(ValueError, match=r"bad-rows.jsonl:2: a law pair needs 'pregunta' and 'respuesta'"):
        run_trainer(tmp_path, tiny_recipe(bad), cache=bench_cache)
    assert not (tmp_path / "checkpoints").exists()


def test_help_is_fast_and_documents_the_recipe():
    """--help imports no data, model or evaluation code (and so returns in seconds)."""
    code = ("import sys\nfrom training.train import main\ntry:\n    main(['--help'])\nexcept SystemExit as e:\n"
            "    assert e.code == 0\nprint('HEAVY', sorted(m for m in ('datasets', 'lm_eval', 'benchmark.loading', "
            "'benchmark.templates', 'matplotlib') if m in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "usage: python -m training.train" in out.stdout
    assert "--recipe training/recipes/" in out.stdout and "accelerate launch" in out.stdout
    for option in ("--model", "--adapter", "--data_files", "--max_examples", "--adapter_dir", "--max_steps",
                   "--lora_r", "--load_in_4bit", "--learning_rate"):
        assert option in out.stdout
    assert out.stdout.strip().splitlines()[-1] == "HEAVY []"


@pytest.mark.parametrize("targets, missing", [
    (["q_proj"], None),                 # TRL hands a one-item list over as a plain string
    (["q_proj", "v_proj", "o_proj"], None),
    (["all-linear"], None),
    (["qkv"], ['qkv']),
    (["q_proj", "dense"], ['dense']),
])
def test_target_check_reads_what_the_parser_gives(targets, missing, bench_cache):
    from transformers import AutoModelForCausalLM

    from benchmark.loading import prepare

    lora = train.parse_args(["--recipe", "training/recipes/llama-2-7b-chat/law.yaml", "--data_files", LAW_FILE,
                             "--lora_target_modules", *targets])[2]
    folder = prepare(load_registry().model("tiny-llama"), bench_cache, precisions=("fp32",))["fp32"]
    model = AutoModelForCausalLM.from_pretrained(folder)
    if missing is None:
        train.check_targets(model, lora.lora_target_modules)
    else:
        with pytest.raises(ValueError, match=re.escape(f"{missing} not found in the model")):
            train.check_targets(model, lora.lora_target_modules)


# ------------------------------------------------------------------------ recipes ---

@pytest.mark.parametrize("recipe", SEED_RECIPES)
def test_seed_recipes_carry_the_thesis_values(recipe):
    raw = yaml.safe_load((REPO / recipe).read_text())
    model, adapter = Path(recipe).parent.name, Path(recipe).stem
    entry = load_registry().model(raw["model"])
    assert (raw["model"], raw["adapter"]) == (model, adapter)
    recipe_args, sft, lora = train.parse_args(["--recipe", recipe])   # every data file exists and is readable
    assert all((REPO / f).is_file() for f in recipe_args.data_files)
    assert len(train.read_examples(recipe_args.data_files, recipe_args.data_format)) > 100
    assert (lora.lora_r, lora.lora_alpha, lora.lora_dropout) == (256, 512 if adapter == "law" else 256, 0.2)
    assert lora.lora_target_modules == list(entry.lora_target_modules)
    assert lora.load_in_4bit and lora.bnb_4bit_quant_type == "nf4" and lora.use_bnb_nested_quant
    assert sft.learning_rate == (2e-5 if model == "mistral-7b" else 2e-4)
    assert (sft.lr_scheduler_type.value, sft.num_train_epochs, sft.optim.value, sft.weight_decay, sft.warmup_steps) == \
        ("cosine", 3, "paged_adamw_8bit", 0.001, 0.3)
    assert sft.activation_checkpointing and sft.gradient_checkpointing


@pytest.mark.parametrize("model, architecture_twin", [("mistral-7b", "tiny-mistral"), ("llama-2-7b-chat", "tiny-llama"),
                                                      ("falcon-7b", "tiny-falcon")])
def test_seed_targets_exist_in_the_architecture(model, architecture_twin, bench_cache):
    """The seed recipes' LoRA targets name real modules of their architecture (its smoke model, same names)."""
    from transformers import AutoModelForCausalLM

    from benchmark.loading import prepare

    lora = train.parse_args(["--recipe", f"training/recipes/{model}/law.yaml", "--data_files", LAW_FILE])[2]
    folder = prepare(load_registry().model(architecture_twin), bench_cache, precisions=("fp32",))["fp32"]
    tiny = AutoModelForCausalLM.from_pretrained(folder)
    train.check_targets(tiny, lora.lora_target_modules)
    with pytest.raises(ValueError, match="not found in the model"):
        train.check_targets(tiny, ["query_key_value"] if model != "falcon-7b" else ["q_proj"])


# -------------------------------------------------------------------- multi-GPU ---

def accelerate_env(config: Path) -> dict:
    """The environment ``accelerate launch --config_file <config> -m training.train`` gives each process."""
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser
    from accelerate.utils.launch import prepare_deepspeed_cmd_env, prepare_multi_gpu_env

    args = launch_command_parser().parse_args(["--config_file", str(config), "-m", "training.train"])
    args, defaults, mixed_precision_from_config = _validate_launch_command(args)
    if args.use_deepspeed:
        fields = list(defaults.deepspeed_config) + (["mixed_precision"] if mixed_precision_from_config else [])
        args.deepspeed_fields_from_accelerate_config = ",".join(fields)
        env = prepare_deepspeed_cmd_env(args)[1]
    else:
        env = prepare_multi_gpu_env(args)
    return {k: v for k, v in env.items() if k.startswith(("ACCELERATE_", "FSDP_"))}


@pytest.mark.parametrize("name, distributed_type", [("ddp", "MULTI_GPU"), ("fsdp", "FSDP"),
                                                     ("deepspeed_zero3", "DEEPSPEED")])
def test_accelerate_configs_parse(name, distributed_type):
    from accelerate.commands.config.config_args import load_config_from_file

    config = load_config_from_file(str(ACCELERATE[name]))
    assert config.distributed_type.value == distributed_type
    assert config.mixed_precision == "bf16" and config.num_processes > 1
    env = accelerate_env(ACCELERATE[name])
    assert env["ACCELERATE_MIXED_PRECISION"] == "bf16"
    assert env.get("ACCELERATE_USE_FSDP") == ("true" if name == "fsdp" else None)
    assert env.get("ACCELERATE_DEEPSPEED_ZERO_STAGE") == ("3" if name == "deepspeed_zero3" else None)


def model_config(recipe: str):
    """TRL's ModelConfig from a recipe's fields alone (SFTConfig needs DeepSpeed itself under ZeRO-3)."""
    import dataclasses

    from trl import ModelConfig

    raw = yaml.safe_load((REPO / recipe).read_text())
    return ModelConfig(**{f.name: raw[f.name] for f in dataclasses.fields(ModelConfig) if f.name in raw})


@pytest.mark.parametrize("name", ["ddp", "fsdp", "deepspeed_zero3"])
@pytest.mark.parametrize("recipe", ["training/recipes/mistral-7b/law.yaml", "training/recipes/falcon-7b/instruct.yaml"])
def test_trainer_builds_its_arguments_under_accelerate(name, recipe, monkeypatch):
    import torch

    for key, value in accelerate_env(ACCELERATE[name]).items():
        monkeypatch.setenv(key, value)
    argv = ["--recipe", recipe, "--data_files", LAW_FILE]
    if name == "deepspeed_zero3" and importlib.util.find_spec("deepspeed") is None:
        # DeepSpeed is not a project dependency: building the arguments stops, naming it, before any model loads
        with pytest.raises(importlib.metadata.PackageNotFoundError, match="deepspeed"):
            train.parse_args(argv)
        lora = model_config(recipe)
    else:
        _, sft, lora = train.parse_args(argv)
        assert sft.mixed_precision == "bf16" and sft.learning_rate in (2e-4, 2e-5)
        assert sft.deepspeed_plugin is None if name != "deepspeed_zero3" else sft.deepspeed_plugin.zero_stage == 3
    kwargs = train.model_init_kwargs(lora)
    assert kwargs["dtype"] == torch.bfloat16
    assert kwargs["quantization_config"].load_in_4bit
    assert kwargs["quantization_config"].bnb_4bit_quant_storage == torch.bfloat16
    if name != "ddp":   # FSDP and ZeRO-3 place the shards themselves
        assert kwargs["device_map"] is None
    elif torch.cuda.is_available():   # DDP: each process on its own GPU
        assert kwargs["device_map"] == {"": int(os.environ.get("LOCAL_RANK", 0))}


@pytest.mark.parametrize("name", ["fsdp", "deepspeed_zero3"])
def test_sharded_qlora_needs_quant_storage_equal_to_dtype(name, monkeypatch):
    """The embedded recipe stores 4-bit weights as uint8, which FSDP / ZeRO-3 cannot shard: said before loading."""
    for key, value in accelerate_env(ACCELERATE[name]).items():
        monkeypatch.setenv(key, value)
    embedded = model_config("training/recipes/smollm2-135m-instruct/instruct.yaml")   # QLoRA
    with pytest.raises(ValueError, match="'bnb_4bit_quant_storage' equals 'dtype'"):
        train.model_init_kwargs(embedded)
    monkeypatch.delenv("ACCELERATE_USE_FSDP", raising=False)
    monkeypatch.delenv("ACCELERATE_DEEPSPEED_ZERO_STAGE", raising=False)
    assert train.model_init_kwargs(embedded)["quantization_config"].load_in_4bit   # one process: fine


def test_the_trainer_takes_the_runners_flag_spelling():
    """--output-dir and --adapter-dir, as run_all spells its flags (the underscore forms still work)."""
    recipe_args, sft_config, _ = train.parse_args(["--recipe", "training/recipes/smollm2-135m-instruct/law.yaml",
                                                   "--output-dir", "runs/x", "--adapter-dir", "runs/y",
                                                   "--max-steps", "3"])
    assert (sft_config.output_dir, str(recipe_args.adapter_dir), sft_config.max_steps) == ("runs/x", "runs/y", 3)
