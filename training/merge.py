"""Build the ``merged`` adapter of a model from its ``instruct`` and ``law`` adapters.

    python -m training.merge --model smollm2-135m-instruct
    python -m training.merge --model smollm2-135m-instruct --combination ties --density 0.5 --weights 1.0 1.0

PEFT's ``add_weighted_adapter`` does the work, with any of its combinations
(``COMBINATIONS``): ``linear`` (the default, as the seed's merged adapters were), ``cat`` (the exact sum,
rank r1 + r2), ``svd`` (the exact sum truncated to ``--svd-rank``), ``ties``, ``dare_linear``,
``dare_ties`` and ``magnitude_prune`` (keep ``--density`` of each update; the DARE ones drop at random,
seeded by ``--seed``) and their ``_svd`` variants. The result is an ordinary PEFT adapter folder (what ``peft=`` and the
webui load), with the tokenizer and a card.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path


COMBINATIONS = ("linear", "cat", "svd", "ties", "ties_svd", "dare_linear", "dare_ties", "dare_linear_svd",
                "dare_ties_svd", "magnitude_prune", "magnitude_prune_svd")


class MergeRefused(ValueError):
    """PEFT cannot build this combination from these adapters (linear, ties and dare_*: equal ranks only)."""


def _uses_density(combination: str) -> bool:
    return combination.startswith(("ties", "dare", "magnitude_prune"))


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="registry model name")
    p.add_argument("--combination", choices=COMBINATIONS, default="linear")
    p.add_argument("--weights", type=float, nargs=2, default=[1.0, 1.0], metavar=("INSTRUCT", "LAW"))
    p.add_argument("--density", type=float, default=0.5,
                   help="ties, dare_* and magnitude_prune*: share of each update's weights kept")
    p.add_argument("--svd-rank", type=int, default=None,
                   help="svd and *_svd: rank of the merged adapter (default: the larger input rank)")
    p.add_argument("--seed", type=int, default=0, help="dare_*: seed of the random drop")
    p.add_argument("--output", type=Path, help="adapter folder (default: the registry's merged path)")
    p.add_argument("--cache-dir", type=Path, default=None)
    return p.parse_args(argv)


def merge(model_name: str, combination: str = "linear", weights=(1.0, 1.0), density: float = 0.5,
          output: Path | None = None, cache_dir: Path | None = None, instruct: Path | None = None,
          law: Path | None = None, svd_rank: int | None = None, seed: int = 0) -> Path:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from benchmark.loading import prepare
    from benchmark.registry import AdapterEntry, load_registry
    from benchmark.registry import check_adapter
    from training.card import save_tokenizer

    entry = load_registry().model(model_name)
    folder = prepare(entry, cache_dir, precisions=("fp32",))["fp32"]
    sources = {"instruct": Path(instruct) if instruct else entry.adapter("instruct").path,
               "law": Path(law) if law else entry.adapter("law").path}
    for name, path in sources.items():   # clear errors before any work
        check_adapter(AdapterEntry(model=entry.name, name=name, path=path, hub_id=None, preset=entry.preset), entry, folder)
    output = Path(output) if output else entry.adapter("merged").path
    base = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    model = PeftModel.from_pretrained(base, str(sources["instruct"]), adapter_name="instruct")
    model.load_adapter(str(sources["law"]), adapter_name="law")
    if combination not in COMBINATIONS:
        raise ValueError(f"combination must be one of {', '.join(COMBINATIONS)}, got '{combination}'")
    kwargs = {"density": density} if _uses_density(combination) else {}
    if combination == "svd" or combination.endswith("_svd"):
        kwargs["svd_rank"] = svd_rank
    torch.manual_seed(seed)   # DARE drops weights at random
    try:
        model.add_weighted_adapter(["instruct", "law"], list(weights), adapter_name="merged",
                                   combination_type=combination, **kwargs)
    except ValueError as exc:
        raise MergeRefused(f"PEFT refuses combination '{combination}' for {entry.name}: {exc}") from exc
    with tempfile.TemporaryDirectory() as tmp:
        model.save_pretrained(tmp, selected_adapters=["merged"])
        saved = Path(tmp) / "merged"
        output.mkdir(parents=True, exist_ok=True)
        for f in saved.iterdir():
            shutil.copy2(f, output / f.name)
    config = json.loads((output / "adapter_config.json").read_text())
    config["base_model_name_or_path"] = entry.source.get("hub_id") or entry.name
    (output / "adapter_config.json").write_text(json.dumps(config, indent=2))
    # the instruct adapter's tokenizer (saved with it by the trainer), else the prepared base's
    has_tokenizer = (sources["instruct"] / "tokenizer_config.json").is_file()
    save_tokenizer(AutoTokenizer.from_pretrained(sources["instruct"] if has_tokenizer else folder), output)
    cards = {n: json.loads((p / "training_stats.json").read_text()) if (p / "training_stats.json").exists() else {}
             for n, p in sources.items()}
    (output / "README.md").write_text(
        f"# LoRA adapter `merged` for `{entry.name}`\n\n"
        f"Built with PEFT `add_weighted_adapter` from `instruct` and `law`: combination `{combination}`, "
        f"weights {list(weights)}" + (f", density {density}" if _uses_density(combination) else "")
        + (f", SVD rank {svd_rank or 'the larger input rank'}" if "svd" in combination else "")
        + (f", seed {seed}" if combination.startswith("dare") else "") + ".\n\n"
        "## Reproduce\n\n```\npython -m training.merge --model " + entry.name +
        f" --combination {combination} --weights {weights[0]} {weights[1]}"
        + (f" --density {density}" if _uses_density(combination) else "")
        + (f" --svd-rank {svd_rank}" if svd_rank and "svd" in combination else "")
        + (f" --seed {seed}" if combination.startswith("dare") else "") + "\n```\n\n"
        "## Inputs\n\n" + "".join(f"- `{n}`: {_shown(sources[n])} (final loss {c.get('final_loss')}, steps {c.get('steps')})\n"
                                  for n, c in cards.items()), encoding="utf-8")
    return output


def _shown(path: Path) -> str:
    """A path as the card shows it: relative to the repository when inside it, so cards do not name a machine."""
    from benchmark.registry import REPO

    try:
        return str(Path(path).resolve().relative_to(REPO))
    except ValueError:
        return str(path)


def main(argv=None) -> None:
    args = parse_args(argv)
    out = merge(args.model, args.combination, args.weights, args.density, args.output, args.cache_dir,
                svd_rank=args.svd_rank, seed=args.seed)
    print(f"merged adapter written to {out}")


if __name__ == "__main__":
    main()
