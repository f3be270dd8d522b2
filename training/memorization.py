"""Does an adapter reproduce its own training answers? A check that tells underfitting from poor transfer.

    python -m training.memorization --model smollm2-135m-instruct --adapter law --n 64

It answers N training questions (a fixed shuffle of the recipe's law data), greedily, with the base and with
the adapter, in the model's template, and prints chrF++ against the training answer, how often an answer
cites one of the articles the training pair cites, and how often it repeats a figure of the answer. If the
adapter scores on its own training questions about what it scores on the test's `visto` questions, it did
not learn the facts (underfitting: capacity, epochs, learning rate); if it scores far higher, it learned them
and fails to transfer them to reworded questions.
"""

from __future__ import annotations

import argparse
import json
import random
import re
from pathlib import Path


def generate_answers(model, tokenizer, template, user_messages: list[str], *, max_new_tokens: int,
                     batch_size: int, desc: str) -> list[str]:
    """Greedy answers to single-turn user messages, rendered with the model's template, cut at its stop strings."""
    from benchmark.generation import generate_texts

    prompts = [template.render([{"role": "user", "content": m}], add_generation_prompt=True) for m in user_messages]
    return generate_texts(model, tokenizer, prompts, stop_strings=template.stop_strings,
                          max_new_tokens=max_new_tokens, batch_size=batch_size, desc=desc)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.memorization", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m-instruct", help="registry model name")
    parser.add_argument("--adapter", default="law", help="registry adapter name")
    parser.add_argument("--adapter-dir", default=None, help="adapter folder (default: the registry's path)")
    parser.add_argument("--recipe", default=None, help="recipe whose data_files to read (default: the model's law recipe)")
    parser.add_argument("--n", type=int, default=64, help="training questions to answer")
    parser.add_argument("--precision", default="bf16", choices=["bf16", "fp32", "8bit", "4bit"])
    parser.add_argument("--max-new-tokens", type=int, default=96)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--json", default=None, help="also write the report to this file")
    args = parser.parse_args(argv)

    import yaml
    from peft import PeftModel

    from benchmark.lawdata import cited_articles, read_jsonl
    from benchmark.loading import load_for_eval
    from benchmark.registry import REPO, load_registry
    from benchmark.registry import check_adapter
    from benchmark.templates import load_template
    from benchmark.textmetrics import corpus_chrfpp

    entry = load_registry().model(args.model)
    recipe = REPO / (args.recipe or f"training/recipes/{args.model}/{args.adapter if args.adapter != 'merged' else 'law'}.yaml")
    files = yaml.safe_load(recipe.read_text(encoding="utf-8"))["data_files"]
    rows = [r for f in files for _, r in read_jsonl(REPO / f) if "pregunta" in r]
    if not rows:
        parser.error(f"{recipe}: its data_files hold no law pairs (pregunta/respuesta)")
    random.Random(0).shuffle(rows)
    rows = rows[:args.n]
    template = load_template(entry.template)
    model, tokenizer, folder = load_for_eval(entry, args.precision)

    def answer_all(m, label):
        return generate_answers(m, tokenizer, template, [r["pregunta"] for r in rows],
                                max_new_tokens=args.max_new_tokens, batch_size=args.batch_size, desc=label)

    def score(outs):
        cited = [set(cited_articles(o)) for o in outs]   # the task's own citation parser
        figures = [set(re.findall(r"\d+", r["respuesta"])) - set(r.get("articulos", [])) for r in rows]
        with_figures = [(f, o) for f, o in zip(figures, outs) if f]
        return {"chrF++ vs the training answer": round(corpus_chrfpp(outs, [r["respuesta"] for r in rows]), 2),
                "cites an article the pair cites": round(sum(bool(c & set(r.get("articulos", [])))
                                                             for c, r in zip(cited, rows)) / len(rows), 3),
                "repeats a figure of the answer": f"{sum(bool(f & set(re.findall(r'[0-9]+', o))) for f, o in with_figures)}"
                                                  f"/{len(with_figures)}",
                "outputs": outs, "example": {"question": rows[0]["pregunta"], "training answer": rows[0]["respuesta"], "output": outs[0]}}

    report = {"base": score(answer_all(model, "base"))}
    adapter_dir = args.adapter_dir or check_adapter(entry.adapter(args.adapter), entry, folder)
    report["adapter_scores"] = score(answer_all(PeftModel.from_pretrained(model, str(adapter_dir)), args.adapter))
    text = json.dumps({"model": args.model, "adapter": args.adapter, "n": len(rows), "precision": args.precision,
                       **report}, ensure_ascii=False, indent=1)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
