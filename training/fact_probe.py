"""Can a law adapter learn the facts at all? Overfit a few articles and measure key-fact recall.

    python -m training.fact_probe --model smollm2-135m-instruct --articles 10 --epochs 15 --output-dir runs/probe/a
    python -m training.fact_probe ... --train-prompt question      # train on the bare question instead
    python -m training.fact_probe ... -- --lora_r 32 --learning_rate 2e-3   # recipe overrides for training.train
    python -m training.fact_probe ... --eval-only --loss-only --precision 4bit   # the loss on the NF4 base it trained on
    python -m training.fact_probe ... --paraphrases training/probe_data/paraphrases-10.jsonl   # + reworded questions

It picks N articles whose ``visto`` test items have every key fact stated in a training answer on the same
article (spread over the laws, the same ones every run), trains the model's law recipe on those articles'
training pairs alone for many epochs, and then answers greedily, in the model's template and with the task's
own prompt (``doc_to_text``), with the base and with the adapter:

- the training questions of those articles, scored on the test's key facts that their training answer states;
- the ``visto`` test questions of those articles, scored with the task's key-fact recall.

Recall high on training questions and low on test questions: the facts are learnt but reworded questions do
not retrieve them. ``--paraphrases`` then adds, for each training pair, other wordings of its question with the
same answer (a JSONL of ``{"id": training id, "preguntas": [...]}``; none may share an n-gram with a test
question), to see whether training on several wordings makes the fact retrievable from the test's.
Low on both: training does not fit the facts (epochs, learning rate, capacity, prompt).
It also gives the teacher-forced loss on the training pairs at the evaluation precision, base and adapter:
a QLoRA adapter is fitted to the NF4-quantized base, and ``--precision 4bit`` against ``bf16`` shows how
much of the fit survives on the base that evaluation loads. The report is ``report-PRECISION[-loss].json``.
"""

from __future__ import annotations

import argparse
import gc
import json
from collections import defaultdict
from pathlib import Path

TASK_UTILS = "tasks/ecuador_law_es/utils.py"


def pick_articles(train: list[dict], test: list[dict], n: int) -> list[tuple[str, str]]:
    """N (law, article) pairs with ``visto`` test items whose key facts a training answer all states."""
    from benchmark.lawdata import answers_by_article
    from benchmark.lawfacts import states

    answers = answers_by_article(train)
    items = defaultdict(list)
    for row in test:
        if row["conocimiento"] == "visto":
            items[(row["ley"], row["articulos"][0])].append(row)
    good = sorted(key for key, rows in items.items()
                  if all(any(states(t, f) for t in answers[key]) for r in rows for f in r["hechos_clave"]))
    by_law = defaultdict(list)
    for key in good:
        by_law[key[0]].append(key)
    picked = []
    while len(picked) < n and any(by_law.values()):   # round robin over the laws, in sorted order
        for law in sorted(by_law):
            if by_law[law] and len(picked) < n:
                picked.append(by_law[law].pop(0))
    return picked


def probe_sets(train: list[dict], test: list[dict], articles: list[tuple[str, str]]):
    """(training rows of the articles, [(training row, facts its answer states)], test items of the articles)."""
    import json

    from benchmark.lawfacts import states

    chosen = set(articles)
    rows = [r for r in train if any((r["ley"], a) in chosen for a in r["articulos"])]
    tests = [r for r in test if r["conocimiento"] == "visto" and (r["ley"], r["articulos"][0]) in chosen]
    facts = defaultdict(set)
    for r in tests:
        facts[(r["ley"], r["articulos"][0])].update(json.dumps(f, sort_keys=True) for f in r["hechos_clave"])
    scored = []
    for r in rows:
        stated = [json.loads(f) for f in sorted({f for a in r["articulos"] for f in facts.get((r["ley"], a), ())})
                  if states(r["respuesta"], json.loads(f))]
        if stated:
            scored.append((r, stated))
    return rows, scored, tests


def paraphrase_rows(rows: list[dict], path: Path, test: list[dict]) -> list[dict]:
    """Copies of ``rows`` with the questions of ``path`` (``{"id", "preguntas"}`` per line) and the same answers.

    Every id must be one of ``rows``; a question that shares an n-gram with a test question is refused, as
    the data checks refuse it for the training split.
    """
    from benchmark.lawdata import OVERLAP_N, DataError, read_jsonl
    from benchmark.textnorm import ngrams, words

    by_id = {r["id"]: r for r in rows}
    test_grams = {g: r["id"] for r in test for g in ngrams(words(r["pregunta"]), OVERLAP_N)}
    out = []
    for lineno, line in read_jsonl(path):
        row = by_id.get(line.get("id"))
        questions = line.get("preguntas")
        if row is None:
            raise DataError(f"{path}:{lineno}: field 'id' {line.get('id')!r} is not a training pair of the probed "
                            "articles; write paraphrases for the ids in train_subset.jsonl")
        if not isinstance(questions, list) or not all(isinstance(q, str) and q.strip() for q in questions):
            raise DataError(f"{path}:{lineno}: field 'preguntas' must be a list of questions")
        for i, question in enumerate(questions):
            shared = ngrams(words(question), OVERLAP_N) & test_grams.keys()
            if shared:
                gram = next(iter(shared))
                raise DataError(f"{path}:{lineno}: question {i + 1} shares an {OVERLAP_N}-gram with test item "
                                f"{test_grams[gram]}: '{' '.join(gram)}'; reword it")
            out.append({**row, "id": f"{row['id']}-p{i + 1}", "pregunta": question})
    return out


def completion_loss(model, tokenizer, pairs: list[dict]) -> dict:
    """Teacher-forced loss and token accuracy on the completions of prompt/completion pairs (what training minimises)."""
    import torch

    total, right, count = 0.0, 0, 0
    for pair in pairs:
        prompt = tokenizer(pair["prompt"], add_special_tokens=False).input_ids
        completion = tokenizer(pair["completion"], add_special_tokens=False).input_ids
        ids = torch.tensor([prompt + completion], device=model.device)
        with torch.no_grad():
            logits = model(input_ids=ids).logits[0, len(prompt) - 1:-1].float()
        target = ids[0, len(prompt):]
        total += torch.nn.functional.cross_entropy(logits, target, reduction="sum").item()
        right += (logits.argmax(-1) == target).sum().item()
        count += len(completion)
    return {"loss": round(total / count, 3), "token_accuracy": round(right / count, 3)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.fact_probe", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m-instruct", help="registry model name")
    parser.add_argument("--recipe", default=None, help="law recipe to start from (default: the model's)")
    parser.add_argument("--articles", type=int, default=10, help="articles to train on")
    parser.add_argument("--epochs", type=float, default=15, help="epochs over those articles' training pairs")
    parser.add_argument("--train-prompt", choices=["task", "question"], default="task",
                        help="training user message: the task's doc_to_text (what evaluation sends) or the bare question")
    parser.add_argument("--paraphrases", type=Path, default=None,
                        help="JSONL of other wordings of the training questions ({id, preguntas}), trained on too")
    parser.add_argument("--output-dir", required=True, help="subset data, checkpoints, adapter and report go here")
    parser.add_argument("--eval-only", action="store_true", help="reuse the adapter already in --output-dir")
    parser.add_argument("--loss-only", action="store_true",
                        help="only the teacher-forced loss on the training pairs (no answers; 4bit generation is slow on the CPU)")
    parser.add_argument("--precision", default="bf16", choices=["bf16", "fp32", "8bit", "4bit"],
                        help="evaluation precision (4bit: the NF4 base that QLoRA trains against)")
    parser.add_argument("--max-new-tokens", type=int, default=96)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("overrides", nargs="*", help="after --: recipe overrides passed to training.train")
    args = parser.parse_args(argv)

    from benchmark import lawdata
    from benchmark.loading import load_for_eval
    from benchmark.registry import load_registry
    from benchmark.templates import load_template, prompt_completion
    from training import train
    from training.memorization import generate_answers

    entry = load_registry().model(args.model)
    recipe = args.recipe or f"training/recipes/{args.model}/law.yaml"
    out = Path(args.output_dir).resolve()
    train_rows = lawdata.load_split("train")
    test_rows = lawdata.load_split("test")
    articles = pick_articles(train_rows, test_rows, args.articles)
    if len(articles) < args.articles:
        parser.error(f"only {len(articles)} articles qualify; ask for at most that many with --articles")
    rows, scored, tests = probe_sets(train_rows, test_rows, articles)
    extra = paraphrase_rows(rows, args.paraphrases, test_rows) if args.paraphrases else []
    print(f"{len(articles)} articles: {len(rows)} training pairs ({len(scored)} state a test key fact), "
          f"{len(extra)} reworded questions, {len(tests)} visto test items")

    adapter = out / "adapter"
    subset = out / "train_subset.jsonl"
    prompt_function = f"{TASK_UTILS}:doc_to_text" if args.train_prompt == "task" else ""
    if not args.eval_only:
        out.mkdir(parents=True, exist_ok=True)
        subset.write_text("".join(json.dumps({k: r[k] for k in ("id", "ley", "articulos", "pregunta", "respuesta")},
                                             ensure_ascii=False) + "\n" for r in rows + extra), encoding="utf-8")
        train.main(["--recipe", recipe, "--data_files", str(subset), "--num_train_epochs", str(args.epochs),
                    "--output_dir", str(out / "checkpoints"), "--adapter_dir", str(adapter),
                    "--save_steps", "100000", "--prompt_function", prompt_function, *args.overrides])
    elif not (adapter / "adapter_config.json").is_file():
        parser.error(f"--eval-only: no adapter in {adapter}")

    from peft import PeftModel

    gc.collect()   # the trainer's model
    doc_to_text = train.load_prompt_function(f"{TASK_UTILS}:doc_to_text")
    recall = train.load_prompt_function(f"{TASK_UTILS}:key_fact_recall")
    template = load_template(entry.template)
    model, tokenizer, _ = load_for_eval(entry, args.precision)
    sets = {"training questions": [(r["pregunta"], facts) for r, facts in scored],
            "visto test questions": [(r["pregunta"], r["hechos_clave"]) for r in tests]}
    report = {"model": args.model, "articles": [f"{law} {a}" for law, a in articles], "epochs": args.epochs,
              "train_prompt": args.train_prompt, "training_pairs": len(rows), "precision": args.precision,
              "paraphrases": {"file": str(args.paraphrases), "questions": len(extra)} if args.paraphrases else None,
              "recall": {}, "answers": {}, "training_pairs_loss": {}}
    pairs = [prompt_completion(template, c) for c in train.read_examples([str(subset)], "law", prompt_function)]

    def measure(m, side):
        report["training_pairs_loss"][side] = completion_loss(m, tokenizer, pairs)
        if args.loss_only:
            return
        for name, items in sets.items():
            outs = generate_answers(m, tokenizer, template, [doc_to_text({"pregunta": q}) for q, _ in items],
                                    max_new_tokens=args.max_new_tokens, batch_size=args.batch_size,
                                    desc=f"{side}: {name}")
            scores = [recall(o, facts) for o, (_, facts) in zip(outs, items)]
            report["recall"].setdefault(name, {"n": len(items)})[side] = round(sum(scores) / len(scores), 3)
            report["answers"].setdefault(name, {})[side] = [
                {"question": q, "facts": facts, "answer": o, "recall": round(sc, 3)}
                for (q, facts), o, sc in zip(items, outs, scores)]

    measure(model, "base")
    measure(PeftModel.from_pretrained(model, str(adapter)), "adapter")
    stats = adapter / "training_stats.json"
    if stats.is_file():
        report["training"] = json.loads(stats.read_text(encoding="utf-8"))
    text = json.dumps(report, ensure_ascii=False, indent=1)
    report_file = out / f"report-{args.precision}{'-loss' if args.loss_only else ''}.json"
    report_file.write_text(text + "\n", encoding="utf-8")
    for side, r in report["training_pairs_loss"].items():
        print(f"{side} on the training pairs, teacher-forced at {args.precision}: loss {r['loss']}, "
              f"token accuracy {r['token_accuracy']}")
    for name, r in report["recall"].items():
        print(f"key-fact recall, {name} (n={r['n']}): base {r['base']:.3f}, adapter {r['adapter']:.3f}")
    print(f"report: {report_file}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
