"""QLoRA supervised fine-tuning of one adapter, from a recipe.

    python -m training.train --recipe training/recipes/smollm2-135m-instruct/law.yaml
    python -m training.train --recipe training/recipes/smollm2-135m-instruct/law.yaml --max-steps 5 --adapter-dir runs/a
    accelerate launch --config_file training/accelerate/ddp.yaml -m training.train --recipe ...

Every hyperparameter lives in the recipe (a YAML read by TRL's ``TrlParser``:
``RecipeArguments`` below, TRL's ``SFTConfig`` and ``ModelConfig``); any of them
can be overridden on the command line. The base model comes from the registry,
prepared by ``benchmark.loading.prepare``; the data is formatted with the model's
webui template through ``benchmark.templates.prompt_completion`` (the same
template evaluation uses) and the loss is on the completion (assistant) tokens
only. Checkpoints go to ``--output-dir``; an interrupted run resumes from the
last one. The adapter folder gets the adapter, the tokenizer with the chat
template, and a training card with a loss curve.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


@dataclass
class RecipeArguments:
    model: str = field(metadata={"help": "registry model name (adapters/registry.yaml)"})
    adapter: str = field(metadata={"help": "adapter name: instruct or law"})
    data_files: list[str] = field(default_factory=list, metadata={"help": "JSONL files, relative to the repo root"})
    data_format: str = field(default="auto", metadata={"help": "law (pregunta/respuesta), chat (messages) or auto"})
    max_examples: int = field(default=0, metadata={"help": "use only the first N examples after shuffling (0 = all)"})
    adapter_dir: str | None = field(default=None, metadata={"help": "where the adapter goes (default: the registry path)"})
    cache_dir: str | None = field(default=None, metadata={"help": "prepared checkpoints (default $BENCH_CACHE)"})
    max_minutes: float = field(default=0.0, metadata={"help": "stop (and save) after this many minutes of training; 0 = no limit"})
    part_steps: int = field(default=0, metadata={
        "help": "stop (and save) after this many optimizer steps in this run; 0 = no limit. With max_minutes, "
                "it cuts a long recipe into parts: rerun the same command to continue"})
    checkpoint_store: str = field(default="", metadata={
        "help": "a folder kept in git (relative to the repo root): every saved checkpoint is copied there "
                "(LoRA weights, optimizer, scheduler, RNG and trainer state: no base weights), and a run whose "
                "output_dir holds no checkpoint resumes from it. Commit it after each part; empty = off"})
    prompt_function: str = field(default="", metadata={
        "help": "law pairs only: 'FILE.py:FUNCTION' that turns a row into the user message, e.g. the task's "
                "'tasks/ecuador_law_es/utils.py:doc_to_text', so training sends the prompt evaluation sends; "
                "empty = the question alone"})
    lm_head_completion_only: bool = field(default=True, metadata={
        "help": "project through the LM head only the positions that have a label (the completion), on every "
                "device; false = TRL's own choice, which on the CPU scores every prompt and padding position "
                "too. Same loss and gradients, less work"})

    def __post_init__(self):
        from benchmark.registry import ADAPTER_NAMES
        if self.adapter not in ADAPTER_NAMES or self.adapter == "merged":
            raise ValueError(f"adapter must be 'instruct' or 'law' (merged is built by training.merge), got '{self.adapter}'")
        if self.data_format not in {"auto", "law", "chat"}:
            raise ValueError(f"data_format must be law, chat or auto, got '{self.data_format}'")
        if not self.data_files:
            raise ValueError("recipe field 'data_files' is empty: list the JSONL files to train on")
        for name in self.data_files:
            if not (REPO / name).is_file():
                raise FileNotFoundError(f"recipe field 'data_files': {name} does not exist under {REPO}")
        if self.prompt_function:
            load_prompt_function(self.prompt_function)   # a bad reference fails here, before any model loads


def load_prompt_function(spec: str):
    """The callable named by 'FILE.py:FUNCTION' (FILE relative to the repo root), as lm-eval's !function loads one."""
    import importlib.util

    path, sep, name = spec.rpartition(":")
    if not sep or not path.endswith(".py") or not name:
        raise ValueError(f"recipe field 'prompt_function': '{spec}' is not 'FILE.py:FUNCTION', "
                         "e.g. 'tasks/ecuador_law_es/utils.py:doc_to_text'")
    file = REPO / path
    if not file.is_file():
        raise FileNotFoundError(f"recipe field 'prompt_function': {path} does not exist under {REPO}")
    module_spec = importlib.util.spec_from_file_location(f"_prompt_{file.parent.name}_{file.stem}", file)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    function = getattr(module, name, None)
    if not callable(function):
        raise ValueError(f"recipe field 'prompt_function': {path} has no function '{name}'")
    return function


def use_compact_lm_head(enabled: bool = True) -> None:
    """Let TRL's fused LM head score only the labelled positions on the CPU too (``enabled=False`` undoes it).

    SFTTrainer computes the loss with TRL's fused LM head, which projects hidden states through the LM head
    in tiles without building the logits. It keeps only the positions whose label is set (the completion)
    where Triton runs; elsewhere it projects every position, prompt and padding included, and masks them
    afterwards, so that compiled backends (Neuron) see one tile shape. On the CPU and on CUDA that is wasted
    work: the masked positions never reach the loss or the gradients. With a 262k-token vocabulary
    (Gemma-3) the LM head is most of a step, and prompts are about half the tokens.
    """
    import trl.trainer.utils as trl_utils

    current = getattr(trl_utils, "_use_triton", None)
    if current is None and not enabled:
        return
    if current is None:
        raise RuntimeError("this TRL version has no trl.trainer.utils._use_triton to choose the compact LM head: "
                           "set recipe field 'lm_head_completion_only: false'")
    original = getattr(current, "original", current)
    if not enabled:
        trl_utils._use_triton = original
        return

    def compact(device) -> bool:
        return original(device) or device.type in {"cpu", "cuda", "mps"}

    compact.original = original
    trl_utils._use_triton = compact


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Field defaults in the help, and the module docstring (with --recipe) as written."""


def time_budget(minutes: float = 0.0, steps: int = 0):
    """A Trainer callback that stops (and saves) once ``minutes`` of wall time or ``steps`` steps of this run are spent."""
    from transformers import TrainerCallback

    class TimeBudget(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            self.start, self.first_step = time.time(), state.global_step

        def on_step_end(self, args, state, control, **kwargs):
            if ((minutes and time.time() - self.start > minutes * 60)
                    or (steps and state.global_step - self.first_step >= steps)):
                control.should_training_stop = True
                control.should_save = True
            return control

    return TimeBudget()


# What a checkpoint needs to resume, without the tokenizer (the registry's) or any base weights.
STORE_FILES = ("adapter_model.safetensors", "adapter_config.json", "optimizer.pt", "scheduler.pt", "rng_state.pth",
               "trainer_state.json", "training_args.bin")


def store_checkpoint(checkpoint: Path, store: Path, fingerprint: Path, base_name: str | None = None) -> Path:
    """Copy ``checkpoint``'s resume files into ``store``/<its name>, atomically, and drop older ones from the store.

    ``base_name`` replaces the adapter config's ``base_model_name_or_path`` (a folder of this machine's cache)."""
    import shutil

    store.mkdir(parents=True, exist_ok=True)
    target = store / checkpoint.name
    staging = store / f".{checkpoint.name}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    for name in STORE_FILES:
        if (checkpoint / name).is_file():
            shutil.copy2(checkpoint / name, staging / name)
    config = staging / "adapter_config.json"
    if base_name and config.is_file():
        data = json.loads(config.read_text(encoding="utf-8"))
        data["base_model_name_or_path"] = base_name
        config.write_text(json.dumps(data, indent=2), encoding="utf-8")
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)
    shutil.copy2(fingerprint, store / FINGERPRINT)
    if (fingerprint.parent / PARTS).is_file():
        shutil.copy2(fingerprint.parent / PARTS, store / PARTS)
    for old in store.glob("checkpoint-*"):
        if old != target:
            shutil.rmtree(old)
    return target


def restore_checkpoint(store: Path, output_dir: Path) -> Path | None:
    """Copy the store's checkpoint (and its fingerprint) into an ``output_dir`` that holds none; its path, or None."""
    import shutil

    stored = sorted(store.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1])) if store.is_dir() else []
    if not stored or any(output_dir.glob("checkpoint-*")):
        return None
    output_dir.mkdir(parents=True, exist_ok=True)
    shutil.copytree(stored[-1], output_dir / stored[-1].name)
    for name in (FINGERPRINT, PARTS):
        if (store / name).is_file():
            shutil.copy2(store / name, output_dir / name)
    return output_dir / stored[-1].name


def _on_save(function):
    """A Trainer callback that calls ``function(global_step)`` after each checkpoint is saved (main process)."""
    from transformers import TrainerCallback

    class OnSave(TrainerCallback):
        def on_save(self, args, state, control, **kwargs):
            if args.process_index == 0:
                function(state.global_step)
            return control

    return OnSave()


FINGERPRINT = "run_fingerprint.json"
PARTS = "parts.json"   # one record per run of the command: steps, wall time, device, date
_TRAJECTORY_FIELDS = ("learning_rate", "lr_scheduler_type", "warmup_steps", "weight_decay", "num_train_epochs",
                      "max_steps", "per_device_train_batch_size", "gradient_accumulation_steps", "max_length",
                      "seed", "optim", "packing", "padding_free", "train_sampling_strategy")
_LORA_FIELDS = ("lora_r", "lora_alpha", "lora_dropout", "lora_target_modules", "load_in_4bit",
                "bnb_4bit_quant_type", "use_bnb_nested_quant")


def run_fingerprint(recipe_args, sft_config, model_args) -> dict:
    """What decides a run's trajectory: base, data (by content), LoRA and optimisation settings.

    Logging, saving and time-budget fields are left out: a run may resume with other values for those.
    """
    from benchmark.loading import sha256_file

    def plain(value):
        return list(value) if isinstance(value, (list, tuple)) else value

    prompt = {"prompt_function": recipe_args.prompt_function} if recipe_args.prompt_function else {}
    return {"model": recipe_args.model, "adapter": recipe_args.adapter, "data_format": recipe_args.data_format,
            "max_examples": recipe_args.max_examples, **prompt,
            "data_files": {f: sha256_file(REPO / f) for f in recipe_args.data_files},
            **{k: plain(getattr(model_args, k, None)) for k in _LORA_FIELDS},
            **{k: plain(getattr(sft_config, k, None)) for k in _TRAJECTORY_FIELDS}}


def check_resume(output_dir: Path, fingerprint: dict) -> None:
    """Refuse to resume checkpoints that another recipe wrote (before any model is loaded).

    Without it, editing a recipe and rerunning would silently continue the old run from its last checkpoint.
    ``main`` records the fingerprint next to the checkpoints just before training starts.
    """
    path = Path(output_dir) / FINGERPRINT
    if path.is_file() and any(Path(output_dir).glob("checkpoint-*")):
        recorded = json.loads(path.read_text(encoding="utf-8"))
        changed = sorted(k for k in set(recorded) | set(fingerprint) if recorded.get(k) != fingerprint.get(k))
        if changed:
            details = "; ".join(f"{k}: {recorded.get(k)!r} -> {fingerprint.get(k)!r}" for k in changed[:6])
            raise ValueError(f"output_dir {output_dir} holds checkpoints of a different run ({details}); "
                             "delete that folder to start afresh, or pass --output_dir for a new run")


def make_parser():
    from trl import ModelConfig, SFTConfig, TrlParser
    return TrlParser((RecipeArguments, SFTConfig, ModelConfig), prog="python -m training.train",
                     description=__doc__, formatter_class=_HelpFormatter)


def read_examples(files: list[str], data_format: str, prompt_function: str = "") -> list[list[dict]]:
    """Conversations (lists of messages) from law pairs or chat rows; bad rows name file and line.

    A law pair's user message is its question, or ``prompt_function(row)`` when the recipe names one.
    """
    from benchmark.lawdata import DataError, read_jsonl

    to_prompt = load_prompt_function(prompt_function) if prompt_function else (lambda row: row["pregunta"])
    conversations = []
    for name in files:
        for lineno, row in read_jsonl(REPO / name):
            kind = data_format if data_format != "auto" else ("chat" if "messages" in row else "law")
            if kind == "chat":
                msgs = row.get("messages")
                if not isinstance(msgs, list) or not msgs or msgs[-1].get("role") != "assistant":
                    raise DataError(f"{name}:{lineno}: field 'messages' must be a list ending with an assistant turn")
                conversations.append([{"role": m["role"], "content": m["content"]} for m in msgs])
            else:
                if not row.get("pregunta") or not row.get("respuesta"):
                    raise DataError(f"{name}:{lineno}: a law pair needs 'pregunta' and 'respuesta'")
                conversations.append([{"role": "user", "content": to_prompt(row)},
                                      {"role": "assistant", "content": row["respuesta"]}])
    return conversations


def check_targets(model, targets) -> None:
    names = {n.rsplit(".", 1)[-1] for n, _ in model.named_modules()}
    targets = [targets] if isinstance(targets, str) else targets or []   # TRL turns a one-item list into a string
    missing = [t for t in targets if t not in names and t != "all-linear"]
    if missing:
        raise ValueError(f"recipe field 'lora_target_modules': {missing} not found in the model; "
                         f"its linear layers are named e.g. {sorted(n for n in names if 'proj' in n or 'dense' in n or 'query' in n)[:8]}")


def parse_args(argv: list[str]):
    """(RecipeArguments, SFTConfig, ModelConfig) from the command line."""
    argv = list(argv)
    if "--recipe" in argv:            # --recipe is our name for TrlParser's --config
        argv[argv.index("--recipe")] = "--config"
    if "-h" not in argv and "--help" not in argv and "--bf16" not in argv:
        import torch
        if not (torch.cuda.is_available() and torch.cuda.is_bf16_supported()):
            argv += ["--bf16", "False"]   # SFTConfig defaults to bf16, which the CPU trainer refuses
    return make_parser().parse_args_and_config(argv)


def model_init_kwargs(model_args) -> dict:
    """``from_pretrained`` kwargs: the QLoRA config, the dtype, and where the weights go.

    One GPU or DDP: each process loads its whole 4-bit replica on its own GPU.
    FSDP or DeepSpeed ZeRO-3 (from ``accelerate launch``): no device map, the
    wrapper places the shards, and the 4-bit weights are sharded only when they
    are stored in the compute dtype.
    """
    import torch
    from trl import get_quantization_config

    sharded = (os.environ.get("ACCELERATE_USE_FSDP", "false").lower() == "true"
               or os.environ.get("ACCELERATE_DEEPSPEED_ZERO_STAGE") == "3")
    if sharded and model_args.load_in_4bit and model_args.bnb_4bit_quant_storage != model_args.dtype:
        raise ValueError(f"FSDP and ZeRO-3 shard 4-bit weights only when recipe field 'bnb_4bit_quant_storage' equals "
                         f"'dtype'; got '{model_args.bnb_4bit_quant_storage}' and '{model_args.dtype}' "
                         "(set both to bfloat16)")
    device_map = None
    if torch.cuda.is_available() and not sharded:
        from accelerate import PartialState
        device_map = {"": PartialState().local_process_index}
    return {"quantization_config": get_quantization_config(model_args),
            "dtype": getattr(torch, model_args.dtype or "float32"), "device_map": device_map}


def main(argv=None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    recipe_args, sft_config, model_args = parse_args(argv)

    # ---- model and data (heavy imports only here, so --help is instant)
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.trainer_utils import get_last_checkpoint
    from trl import SFTTrainer, get_peft_config

    from benchmark.loading import prepare
    from benchmark.registry import load_registry
    from benchmark.templates import load_template, prompt_completion
    from training.card import save_tokenizer, write_card

    registry = load_registry()
    entry = registry.model(recipe_args.model)
    adapter_dir = Path(recipe_args.adapter_dir) if recipe_args.adapter_dir else entry.adapter(recipe_args.adapter).path
    template = load_template(entry.template)
    conversations = read_examples(recipe_args.data_files, recipe_args.data_format, recipe_args.prompt_function)
    rows = [prompt_completion(template, c) for c in conversations]
    dataset = Dataset.from_list(rows).shuffle(seed=sft_config.seed)
    if recipe_args.max_examples:
        dataset = dataset.select(range(min(recipe_args.max_examples, len(dataset))))

    fingerprint = run_fingerprint(recipe_args, sft_config, model_args)
    output_dir = Path(sft_config.output_dir)
    store = REPO / recipe_args.checkpoint_store if recipe_args.checkpoint_store else None
    if store is not None:
        try:
            check_resume(store, fingerprint)
        except ValueError as exc:
            raise ValueError(f"{exc}. The recipe's checkpoint_store belongs to the recipe as committed: for a "
                             "run with other settings add --checkpoint_store '' (and an --output_dir of its own)") from None
        restored = restore_checkpoint(store, output_dir)
        if restored:
            print(f"resuming from the stored checkpoint {store / restored.name}")
    check_resume(output_dir, fingerprint)
    folder = prepare(entry, recipe_args.cache_dir, precisions=("fp32",))["fp32"]
    if not torch.cuda.is_available():
        model_args.dtype = "float32"   # bf16 compute is for GPUs; fp32 on the CPU
    if not model_args.lora_target_modules:
        model_args.lora_target_modules = list(entry.lora_target_modules)
    model = AutoModelForCausalLM.from_pretrained(folder, **model_init_kwargs(model_args))
    check_targets(model, model_args.lora_target_modules)
    tokenizer = AutoTokenizer.from_pretrained(folder)

    # ---- train (resumes from the last checkpoint in output_dir)
    sft_config.completion_only_loss = True
    use_compact_lm_head(recipe_args.lm_head_completion_only)
    trainer = SFTTrainer(model=model, args=sft_config, train_dataset=dataset, processing_class=tokenizer,
                         peft_config=get_peft_config(model_args))
    # TRL casts QLoRA adapter weights to bf16, but resuming reloads them through PEFT in fp32: keep them
    # in fp32 from the start, so that an interrupted run continues exactly as an uninterrupted one.
    for param in trainer.model.parameters():
        if param.requires_grad:
            param.data = param.data.float()
    if recipe_args.max_minutes or recipe_args.part_steps:
        trainer.add_callback(time_budget(recipe_args.max_minutes, recipe_args.part_steps))
    last = get_last_checkpoint(sft_config.output_dir) if output_dir.is_dir() else None
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / FINGERPRINT).write_text(json.dumps(fingerprint, indent=1, ensure_ascii=False), encoding="utf-8")
    start, first_step = time.time(), (int(Path(last).name.split("-")[1]) if last else 0)
    parts_file = output_dir / PARTS
    parts = json.loads(parts_file.read_text(encoding="utf-8")) if last and parts_file.is_file() else []
    parts = [p for p in parts if p["to_step"] <= first_step]   # a part killed before its last save is redone

    base_name = entry.source.get("hub_id") or entry.name

    def after_save(step: int) -> None:
        """Record this part's progress, then copy the checkpoint (and the record) into the store."""
        from benchmark.results import atomic_write
        from training.card import hardware
        part = {"from_step": first_step, "to_step": step, "seconds": round(time.time() - start, 1),
                "device": hardware(), "date": time.strftime("%Y-%m-%d", time.gmtime())}
        atomic_write(parts_file, json.dumps([*parts, part], indent=1, ensure_ascii=False))
        if store is not None and (output_dir / f"checkpoint-{step}").is_dir():
            store_checkpoint(output_dir / f"checkpoint-{step}", store, output_dir / FINGERPRINT, base_name)

    trainer.add_callback(_on_save(after_save))
    result = trainer.train(resume_from_checkpoint=last)
    seconds = time.time() - start
    parts = json.loads(parts_file.read_text(encoding="utf-8")) if parts_file.is_file() else []
    if trainer.state.global_step < trainer.state.max_steps:
        where = f"{store} (commit it)" if store is not None else str(output_dir)
        print(f"part ended at step {trainer.state.global_step} of {trainer.state.max_steps} after {seconds / 60:.1f} "
              f"min; the checkpoint is in {where}. Run the same command again to continue; the adapter is written "
              "when the last step is done")
        return

    # ---- save the adapter, the tokenizer (with the chat template) and the card
    adapter_dir.mkdir(parents=True, exist_ok=True)
    trainer.model.save_pretrained(adapter_dir)
    save_tokenizer(tokenizer, adapter_dir)
    base_id = entry.source.get("hub_id") or entry.name
    config_path = adapter_dir / "adapter_config.json"
    config = json.loads(config_path.read_text())
    config["base_model_name_or_path"] = base_id
    config_path.write_text(json.dumps(config, indent=2))
    write_card(adapter_dir, entry=entry, recipe_args=recipe_args, sft_config=sft_config, model_args=model_args,
               log_history=trainer.state.log_history, train_result=result, seconds=seconds,
               examples=len(dataset), resumed_from=last, argv=argv,
               extra={"parts": parts, "wall_seconds_all_parts": round(sum(p["seconds"] for p in parts), 1)}
               if len(parts) > 1 else None)
    print(f"adapter written to {adapter_dir}")


if __name__ == "__main__":
    main()
