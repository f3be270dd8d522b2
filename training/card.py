"""The training card (README.md + loss_curve.png) written into every adapter folder."""

from __future__ import annotations

import json
import os
import resource
from dataclasses import asdict
from pathlib import Path

from benchmark.loading import sha256_file
from benchmark.results import library_versions

REPO = Path(__file__).resolve().parent.parent


def plot_loss(log_history: list[dict], path: Path) -> bool:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = [(e["step"], e["loss"]) for e in log_history if "loss" in e and "step" in e]
    if not points:
        return False
    fig, ax = plt.subplots(figsize=(6, 3.2), dpi=100)
    ax.plot([p[0] for p in points], [p[1] for p in points], marker=".", lw=1)
    ax.set_xlabel("step")
    ax.set_ylabel("training loss (completion tokens)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return True


def save_tokenizer(tokenizer, folder: Path) -> None:
    """``save_pretrained``, then rewrite ``tokenizer.json`` without indentation: same content, and Gemma's
    262k-entry tokenizer shrinks from 33 MB to 14 MB in every adapter folder."""
    tokenizer.save_pretrained(folder)
    path = Path(folder) / "tokenizer.json"
    if path.is_file():
        data = json.loads(path.read_text(encoding="utf-8"))
        path.write_text(json.dumps(data, ensure_ascii=False, separators=(",", ":")), encoding="utf-8")


def hardware() -> str:
    """What the run trained on, for the card: the GPU's name, or the CPU and its core count."""
    import platform

    import torch

    if torch.cuda.is_available():
        return f"{torch.cuda.get_device_name(0)} (CUDA {torch.version.cuda})"
    return f"CPU {platform.machine()}, {os.cpu_count()} cores, {torch.get_num_threads()} threads"


def _recipe_hash(argv) -> dict | None:
    """{recipe path: sha256} of the ``--recipe`` file a run was started with, so a card's Reproduce
    command can be checked against the recipe in the repository."""
    argv = list(argv or [])
    if "--recipe" in argv and argv.index("--recipe") + 1 < len(argv):
        path = Path(argv[argv.index("--recipe") + 1])
        full = path if path.is_absolute() else REPO / path
        if full.is_file():
            return {str(path): sha256_file(full)}
    return None


def write_card(adapter_dir: Path, *, entry, recipe_args, sft_config, model_args, log_history, train_result,
               seconds, examples, resumed_from, argv, extra: dict | None = None) -> None:
    losses = [e["loss"] for e in log_history if "loss" in e]
    tokens = next((e.get("num_input_tokens_seen") for e in reversed(log_history) if e.get("num_input_tokens_seen")), None)
    steps = train_result.global_step if train_result else None
    # TRL's num_tokens counts the tokens the model saw without padding; num_input_tokens_seen includes padding
    trained = next((e.get("num_tokens") for e in reversed(log_history) if e.get("num_tokens")), None)
    stats = {
        "model": entry.name, "adapter": recipe_args.adapter, "steps": steps, "examples": examples,
        "device": hardware(), "tokens_seen": tokens, "wall_seconds": round(seconds, 1),
        "tokens_per_second": round(tokens / seconds, 1) if tokens and seconds else None,
        "tokens_trained": int(trained) if trained else None,
        "trained_tokens_per_second": round(trained / seconds, 1) if trained and seconds else None,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "first_loss": losses[0] if losses else None, "final_loss": losses[-1] if losses else None,
        "resumed_from": str(resumed_from) if resumed_from else None,
        "data_files": {f: sha256_file(REPO / f) for f in recipe_args.data_files},
        "recipe": _recipe_hash(argv),
        "libraries": library_versions(), "command": "python -m training.train " + " ".join(argv),
        **(extra or {}),
    }
    (adapter_dir / "training_stats.json").write_text(json.dumps(
        {**stats, "log_history": [{k: v for k, v in e.items() if isinstance(v, (int, float))} for e in log_history]},
        indent=1))
    has_plot = plot_loss(log_history, adapter_dir / "loss_curve.png")
    lora = {k: getattr(model_args, k) for k in ("lora_r", "lora_alpha", "lora_dropout", "lora_target_modules",
                                                 "load_in_4bit", "bnb_4bit_quant_type", "use_bnb_nested_quant", "dtype")}
    sft = {k: v for k, v in asdict(sft_config).items() if k in {
        "learning_rate", "num_train_epochs", "max_steps", "per_device_train_batch_size", "gradient_accumulation_steps",
        "lr_scheduler_type", "warmup_steps", "weight_decay", "optim", "max_length", "packing", "padding_free", "seed"}}
    lines = [
        f"# LoRA adapter `{recipe_args.adapter}` for `{entry.name}`", "",
        f"Base model: {entry.display_name} (`{entry.source.get('hub_id') or entry.name}` in `adapters/registry.yaml`).",
        ("QLoRA (bitsandbytes 4-bit NF4, double quantization)" if getattr(model_args, "load_in_4bit", False)
         else f"LoRA on the {getattr(model_args, 'dtype', None) or 'float32'} base (not quantized)")
        + " with TRL's SFTTrainer; loss on the assistant tokens only.",
        f"Prompt format: `{Path(entry.template).relative_to(REPO)}`, the template evaluation uses; user message: "
        + (f"`{recipe_args.prompt_function}` of each row." if recipe_args.prompt_function
           else "the row's own question or messages."), "",
        "## Reproduce", "", "```", stats["command"], "```", "",
        *([f"The recipe as trained: `{p}` sha256 `{h}` (a different hash means the recipe changed since)."
           for p, h in (stats["recipe"] or {}).items()] + [""] if stats["recipe"] else []),
        "## Training", "",
        "| | |", "|---|---|",
        *(f"| {k} | {v} |" for k, v in stats.items() if k not in {"data_files", "libraries", "command"}), "",
        "## Data", "", *(f"- `{f}` sha256 `{h}`" for f, h in stats["data_files"].items()), "",
        "## Hyperparameters", "", "```json", json.dumps({"lora": lora, "sft": sft}, indent=1, default=str), "```", "",
        "## Libraries", "", *(f"- {k} {v}" for k, v in stats["libraries"].items()), "",
    ]
    if has_plot:
        lines += ["## Loss curve", "", "![loss curve](loss_curve.png)", ""]
    if extra and extra.get("scores"):
        lines += ["## Scores", "", extra["scores"], ""]
    (adapter_dir / "README.md").write_text("\n".join(lines), encoding="utf-8")
