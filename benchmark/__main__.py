"""Command line of the benchmark: ``es-llm-bench`` (or ``python -m benchmark``).

    es-llm-bench run [run_all options]          # every combination, then the leaderboard (= benchmark/run_all.py)
    es-llm-bench compare --results DIR ...      # adapter against base, paired bootstrap intervals
    es-llm-bench leaderboard [--results DIR]   # rebuild the page: published results + a results folder
    es-llm-bench chat --model NAME [--adapter law]
    python -m benchmark prepare [--suite embedded] [--models NAME ...] [--cache-dir DIR] [--force]
    python -m benchmark generate --model NAME [--adapter instruct|law|merged] [--preset NAME] [--raw]
                                 --prompt TEXT [--max-new-tokens N]
    python -m benchmark generate --model NAME --chat          # small interactive chat
    python -m benchmark export-webui --webui-dir PATH [--models NAME ...]

``prepare`` builds the local 8-bit checkpoints (see benchmark/loading.py).
``generate`` is the seed's webui workflow without the webui: the prompt goes
through the model's template (or is used as it stands with ``--raw``) and is
decoded with the combination's preset. ``export-webui`` copies our templates,
presets and adapters into a text-generation-webui install.
``benchmark/run_all.py`` runs the whole matrix.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from benchmark.registry import RegistryError, load_registry


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="es-llm-bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("prepare", help="build the 8-bit checkpoints of a suite")
    p.add_argument("--suite", default="embedded")
    p.add_argument("--models", nargs="+")
    p.add_argument("--cache-dir", type=Path, default=None, help="default: $BENCH_CACHE or ~/.cache/es-llm-bench")
    p.add_argument("--force", action="store_true", help="rebuild even if the checksums verify")
    g = sub.add_parser("generate", help="generate with one base+adapter combination")
    g.add_argument("--model", required=True)
    g.add_argument("--adapter", choices=["instruct", "law", "merged"])
    g.add_argument("--preset", help="preset name in presets/ or a path (default: the combination's)")
    g.add_argument("--precision", choices=["8bit", "4bit", "bf16", "fp32"], default="8bit")
    g.add_argument("--raw", action="store_true", help="send the prompt as it stands, without the template")
    g.add_argument("--prompt", help="the user message")
    g.add_argument("--chat", action="store_true", help="interactive chat in the terminal (empty line or Ctrl-D ends)")
    g.add_argument("--max-new-tokens", type=int, default=128)
    g.add_argument("--seed", type=int, default=1234)
    g.add_argument("--cache-dir", type=Path, default=None)
    e = sub.add_parser("export-webui", help="install templates, presets and adapters into a webui")
    e.add_argument("--webui-dir", type=Path, required=True)
    e.add_argument("--models", nargs="+")
    e.add_argument("--suite", default="embedded")
    for name, (_, text) in PASS_THROUGH.items():
        sub.add_parser(name, help=text, add_help=False)
    sub.add_parser("chat", help="interactive chat with one combination (= generate --chat)", add_help=False)
    return parser


# Sub-commands that are whole programs of their own: their arguments go to them unchanged.
PASS_THROUGH = {
    "run": ("benchmark.run_all", "score every combination and write the leaderboard (see: run --help)"),
    "compare": ("benchmark.compare", "adapter against its base with paired bootstrap intervals (see: compare --help)"),
    "leaderboard": ("leaderboard.build", "rebuild the static leaderboard page from results (see: leaderboard --help)"),
}


def cmd_prepare(args) -> int:
    from benchmark.loading import prepare
    registry = load_registry()
    for entry in registry.select(args.suite, args.models):
        folders = prepare(entry, args.cache_dir, force=args.force, registry=registry)
        print(f"{entry.name}: 8-bit checkpoint at {folders['8bit']}")
    return 0


def cmd_generate(args) -> int:
    import torch

    from benchmark.generation import generate_texts
    from benchmark.loading import load_for_eval
    from benchmark.presets import find_preset, load_preset
    from benchmark.registry import check_adapter
    from benchmark.templates import load_template

    if not args.chat and not args.prompt:
        raise ValueError("give --prompt TEXT, or --chat for an interactive chat")
    entry = load_registry().model(args.model)
    template = load_template(entry.template)
    preset = find_preset(args.preset) if args.preset else load_preset(
        entry.adapter(args.adapter).preset if args.adapter else entry.preset)
    model, tokenizer, folder = load_for_eval(entry, args.precision, args.cache_dir)
    if args.adapter:
        from peft import PeftModel
        model = PeftModel.from_pretrained(model, str(check_adapter(entry.adapter(args.adapter), entry, folder)))
    torch.manual_seed(args.seed)
    history: list[dict] = []

    def reply(text: str) -> str:
        if args.raw:
            prompt = text
        else:
            history.append({"role": "user", "content": text})
            prompt = template.render(history, add_generation_prompt=True)
        [answer] = generate_texts(model, tokenizer, [prompt], stop_strings=template.stop_strings,
                                  max_new_tokens=args.max_new_tokens, batch_size=1,
                                  generate_kwargs=preset.generate_kwargs())
        if not args.raw:
            history.append({"role": "assistant", "content": answer})
        return answer

    if not args.chat:
        print(reply(args.prompt))
        return 0
    print(f"chat with {entry.name}{'+' + args.adapter if args.adapter else ''} (preset {preset.name}); empty line ends")
    while True:
        try:
            text = input("tú> ").strip()
        except EOFError:
            break
        if not text:
            break
        print(f"modelo> {reply(text)}")
    return 0


def cmd_export_webui(args) -> int:
    from benchmark.presets import load_preset

    webui = args.webui_dir
    if not webui.is_dir():
        raise ValueError(f"--webui-dir {webui} does not exist")
    base = webui / "user_data" if (webui / "user_data").is_dir() else webui
    dirs = {k: base / k for k in ("instruction-templates", "presets", "loras")}
    registry = load_registry()
    notes = ["# es-llm-bench: which template and preset go with which model and adapter", "",
             "In the webui: load the base model in 8-bit (Model tab, load-in-8bit), add the LoRA (Model tab, LoRA(s)),",
             "choose the instruction template (Parameters > Instruction template) and the preset (Parameters > Preset).", "",
             "| model | LoRA | instruction template | preset |", "|---|---|---|---|"]
    for d in dirs.values():
        d.mkdir(parents=True, exist_ok=True)
    for entry in registry.select(args.suite, args.models):
        shutil.copy2(entry.template, dirs["instruction-templates"] / entry.template.name)
        shutil.copy2(entry.preset, dirs["presets"] / entry.preset.name)
        notes.append(f"| {entry.display_name} | (none) | {entry.template.stem} | {load_preset(entry.preset).name} |")
        for name, adapter in entry.adapters.items():
            shutil.copy2(adapter.preset, dirs["presets"] / adapter.preset.name)
            lora = f"{entry.name}-{name}"
            if adapter.path and (adapter.path / "adapter_config.json").is_file():
                target = dirs["loras"] / lora
                shutil.copytree(adapter.path, target, dirs_exist_ok=True)
            else:
                lora += " (not trained yet)"
            notes.append(f"| {entry.display_name} | {lora} | {entry.template.stem} | {adapter.preset.stem} |")
    note = base / "es-llm-bench.md"
    note.write_text("\n".join(notes) + "\n", encoding="utf-8")
    print(f"installed into {base}; see {note}")
    return 0


def main(argv=None) -> int:
    import importlib

    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in PASS_THROUGH:
        return importlib.import_module(PASS_THROUGH[argv[0]][0]).main(argv[1:])
    if argv and argv[0] == "chat":
        argv = ["generate", "--chat", *argv[1:]]
    args = build_parser().parse_args(argv)
    try:
        return {"prepare": cmd_prepare, "generate": cmd_generate, "export-webui": cmd_export_webui}[args.command](args)
    except (RegistryError, ValueError, FileNotFoundError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
