"""instruct_es_gen: Spanish instructions answered freely and scored against a reference.

Wired from ``_gen_template_yaml`` with ``!function``.  Holds the data loader
(with row validation), the prompt builder and ``process_results``; the metric
code itself lives in ``benchmark/textmetrics.py``.

Prompting: items of the ``contextual`` category carry earlier conversation
turns.  With ``--apply_chat_template`` those turns are passed to the model's
chat template as real user/assistant messages (lm-eval's own
``fewshot_context`` would collapse them into one user message), hence the small
task class :class:`InstructGenTask`.  Without a chat template the turns are
written as a plain "Usuario: / Asistente:" transcript.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import datasets
from lm_eval.api.task import ConfigurableTask

TASK_DIR = Path(__file__).resolve().parent
DATA_FILE = TASK_DIR / "data" / "gen_test.jsonl"

try:  # the repo is not necessarily pip-installed; lm-eval loads this file by path
    from benchmark import textmetrics
    from benchmark.textnorm import contains, normalize
except ModuleNotFoundError:
    sys.path.insert(0, str(TASK_DIR.parents[1]))
    from benchmark import textmetrics
    from benchmark.textnorm import contains, normalize

CATEGORIES = ("basica", "compleja", "creativa", "contextual")
ROLES = ("user", "assistant")
SPEAKER = {"system": "Sistema", "user": "Usuario", "assistant": "Asistente"}
FIELDS = ("id", "categoria", "contexto", "instruccion", "referencia", "respuesta_exacta")
REQUIRED = ("id", "categoria", "contexto", "instruccion", "referencia")
_ID = re.compile(r"gen-\d{4}")

FEATURES = datasets.Features(
    {
        "id": datasets.Value("string"),
        "categoria": datasets.Value("string"),
        "contexto": datasets.List({"role": datasets.Value("string"), "content": datasets.Value("string")}),
        "instruccion": datasets.Value("string"),
        "referencia": datasets.Value("string"),
        "respuesta_exacta": datasets.Value("string"),
    }
)


# --------------------------------------------------------------------------- data


class GenDataError(ValueError):
    """A row of the data file breaks the schema; the message names file, line and field."""


def _fail(path: Path, line: int, field: str, problem: str) -> None:
    raise GenDataError(f"{path}:{line}: field '{field}': {problem}")


def _text(value: Any) -> bool:
    return isinstance(value, str) and value.strip() != ""


def validate_row(row: Any, path: Path, line: int) -> dict:
    """Check one parsed JSONL row; return it with ``respuesta_exacta`` always present."""
    if not isinstance(row, dict):
        _fail(path, line, "<row>", f"expected a JSON object, got {type(row).__name__}")
    for key in row:
        if key not in FIELDS:
            _fail(path, line, key, f"unknown field (allowed: {', '.join(FIELDS)})")
    for key in REQUIRED:
        if key not in row:
            _fail(path, line, key, "missing")
    if not isinstance(row["id"], str) or not _ID.fullmatch(row["id"]):
        _fail(path, line, "id", f"must look like 'gen-0001', got {row['id']!r}")
    cat = row["categoria"]
    if cat not in CATEGORIES:
        _fail(path, line, "categoria", f"unknown category {cat!r} (allowed: {', '.join(CATEGORIES)})")
    for key in ("instruccion", "referencia"):
        if not _text(row[key]):
            _fail(path, line, key, "must be a non-empty string")

    ctx = row["contexto"]
    if not isinstance(ctx, list):
        _fail(path, line, "contexto", "must be a list of {role, content} turns")
    if cat == "contextual" and not ctx:
        _fail(path, line, "contexto", "a 'contextual' item needs the earlier turns")
    if cat != "contextual" and ctx:
        _fail(path, line, "contexto", f"must be empty for category {cat!r}")
    for i, turn in enumerate(ctx):
        where = f"contexto[{i}]"
        if not isinstance(turn, dict) or set(turn) != {"role", "content"}:
            _fail(path, line, where, "each turn must be an object with exactly 'role' and 'content'")
        if turn["role"] not in ROLES:
            _fail(path, line, f"{where}.role", f"must be 'user' or 'assistant', got {turn['role']!r}")
        expected = ROLES[i % 2]
        if turn["role"] != expected:
            _fail(path, line, f"{where}.role", f"turns must alternate starting with 'user'; expected {expected!r}")
        if not _text(turn["content"]):
            _fail(path, line, f"{where}.content", "must be a non-empty string")
    if ctx and ctx[-1]["role"] != "assistant":
        _fail(path, line, "contexto", "must end with an 'assistant' turn (the instruction is the next user turn)")

    exact = row.get("respuesta_exacta")
    if exact is not None:
        if not _text(exact) or not normalize(exact):
            _fail(path, line, "respuesta_exacta", "must be a non-empty string when present")
        if not contains(row["referencia"], exact):
            _fail(path, line, "respuesta_exacta", f"{exact!r} does not occur in 'referencia'")
    return {**row, "respuesta_exacta": exact}


def load_items(path: str | Path = DATA_FILE) -> list[dict]:
    """Read and validate the JSONL file; ids must be unique."""
    path = Path(path)
    items: list[dict] = []
    seen: dict[str, int] = {}
    from benchmark.jsonl import read_jsonl

    for line_no, row in read_jsonl(path, error=lambda p, n, problem: GenDataError(f"{p}:{n}: field '<row>': {problem}")):
        item = validate_row(row, path, line_no)
        if item["id"] in seen:
            _fail(path, line_no, "id", f"duplicate of line {seen[item['id']]}")
        seen[item["id"]] = line_no
        items.append(item)
    if not items:
        raise GenDataError(f"{path}: no items")
    return items


def load_dataset(categoria: str | None = None, data_file: str | None = None, **_: Any) -> datasets.DatasetDict:
    """``custom_dataset`` for lm-eval: the ``test`` split, optionally one category.

    lm-eval passes the task metadata and ``dataset_kwargs`` as keyword arguments;
    only ``categoria`` and ``data_file`` are used.  Paths resolve from this folder,
    so the task works from any working directory.
    """
    path = Path(data_file) if data_file else DATA_FILE
    if not path.is_absolute():
        path = TASK_DIR / path
    items = load_items(path)
    if categoria is not None:
        if categoria not in CATEGORIES:
            raise ValueError(f"unknown categoria {categoria!r} (allowed: {', '.join(CATEGORIES)})")
        items = [it for it in items if it["categoria"] == categoria]
    return datasets.DatasetDict({"test": datasets.Dataset.from_list(items, features=FEATURES)})


# --------------------------------------------------------------------------- prompts


def doc_to_messages(doc: dict, system_instruction: str | None = None) -> list[dict[str, str]]:
    """The conversation as chat messages: earlier turns, then the instruction."""
    messages = [{"role": "system", "content": system_instruction}] if system_instruction else []
    messages += [{"role": t["role"], "content": t["content"]} for t in doc["contexto"] or []]
    messages.append({"role": "user", "content": doc["instruccion"]})
    return messages


def messages_to_transcript(messages: list[dict[str, str]]) -> str:
    """Plain-text rendering for models without a chat template; ends with the assistant cue."""
    blocks = [f"{SPEAKER[m['role']]}: {m['content'].strip()}" for m in messages]
    return "\n\n".join(blocks + [f"{SPEAKER['assistant']}:"])


def doc_to_text(doc: dict) -> str:
    return messages_to_transcript(doc_to_messages(doc))


def build_context(
    doc: dict,
    *,
    system_instruction: str | None = None,
    chat_template: Callable[..., str] | None = None,
    gen_prefix: str | None = None,
) -> str:
    """The prompt for one item.

    ``chat_template`` has lm-eval's signature ``(messages, add_generation_prompt=...)``
    (e.g. ``HFLM.apply_chat_template``); when given, each earlier turn is its own message.
    """
    messages = doc_to_messages(doc, system_instruction)
    if chat_template is not None:
        if gen_prefix:
            return chat_template(messages + [{"role": "assistant", "content": gen_prefix}], add_generation_prompt=False)
        return chat_template(messages, add_generation_prompt=True)
    text = messages_to_transcript(messages)
    return f"{text} {gen_prefix}" if gen_prefix else text


class InstructGenTask(ConfigurableTask):
    """ConfigurableTask whose prompt keeps conversation turns as real chat turns."""

    def __init__(self, config: dict | None = None, **kwargs: Any) -> None:
        config = {k: v for k, v in (config or {}).items() if k != "class"}
        super().__init__(config=config, **kwargs)

    def fewshot_context(
        self,
        doc: dict,
        num_fewshot: int,
        system_instruction: str | None = None,
        apply_chat_template: bool = False,
        fewshot_as_multiturn: bool = False,
        chat_template: Callable[..., str] | None = None,
        gen_prefix: str | None = None,
    ) -> str:
        if num_fewshot:
            raise ValueError(f"{self.config.task} is zero-shot (the items are instructions); got num_fewshot={num_fewshot}")
        description = self.config.description or ""
        system = "\n\n".join(s for s in (system_instruction, description) if s) or None
        return build_context(
            doc,
            system_instruction=system,
            chat_template=chat_template if apply_chat_template else None,
            gen_prefix=gen_prefix,
        )

    def process_results(self, doc: dict, results: list) -> dict:
        # Only report the metrics this task's YAML lists (subtasks drop exact_match).
        scores = super().process_results(doc, results)
        return {k: v for k, v in scores.items() if k in self._aggregation_list}


# --------------------------------------------------------------------------- scoring

_THINK = re.compile(r"<think>.*?</think>", re.DOTALL)


def clean_prediction(text: str) -> str:
    """Strip whitespace and any <think>...</think> block; an unclosed <think> leaves no answer."""
    text = _THINK.sub("", text or "")
    if "<think>" in text:
        text = text.split("<think>", 1)[0]
    return text.strip()


def process_results(doc: dict, results: list[str]) -> dict[str, Any]:
    pred = clean_prediction(results[0])
    ref = doc["referencia"]
    exact = doc.get("respuesta_exacta")
    return {
        "chrf_pp": (ref, pred),
        "bleu": (ref, pred),
        "rougeL": textmetrics.rouge_l(pred, ref),
        "spanish_rate": textmetrics.spanish_score(pred),
        "exact_match": textmetrics.exact_match(pred, exact) if exact else None,
    }


chrfpp_aggregate = textmetrics.chrfpp_aggregate
bleu_aggregate = textmetrics.bleu_aggregate
mean_defined = textmetrics.mean_defined
