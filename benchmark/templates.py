"""text-generation-webui instruction templates -> prompts and chat templates.

The ONLY prompt builder of the project. Evaluation (``lm_eval
--apply_chat_template`` and ``run_all``) uses the tokenizer's ``chat_template``,
which :func:`apply_to_tokenizer` sets from :attr:`Template.jinja`; training uses
:func:`prompt_completion`, which renders the same Jinja source in the same kind
of sandbox. A train/inference format mismatch cannot happen.

Two webui formats are read:

* Jinja (``instruction_template``), the webui's format since December 2023;
* the older one (``user``, ``bot``, ``turn_template``, ``context``,
  ``system_message``). It is compiled to an equivalent Jinja source that renders
  the way the webui's ``generate_chat_prompt`` did before the switch: the
  context (with ``<|system-message|>`` filled in) is prepended with no
  separator, each turn is the ``turn_template`` with the names and messages
  substituted, literal text such as ``<s>`` is kept, and the generation prompt
  is the bot part of the turn up to ``<|bot-message|>``, right-stripped of spaces.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from pathlib import Path

import jinja2
from jinja2.exceptions import SecurityError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from benchmark.yamlio import load_yaml

LEGACY_KEYS = {"user", "bot", "turn_template", "context", "system_message"}
SENTINEL = "\x00{}\x00"


class TemplateError(ValueError):
    """A template that cannot be loaded or rendered; the message names the file."""


@dataclass(frozen=True)
class Template:
    name: str
    path: Path | None
    jinja: str          # chat_template source, for tokenizers and for rendering
    format: str         # "jinja" or "legacy"

    def render(self, messages: list[dict], add_generation_prompt: bool = False,
               bos_token: str = "", eos_token: str = "") -> str:
        try:
            return _compile(self.jinja).render(messages=messages, add_generation_prompt=add_generation_prompt,
                                               bos_token=bos_token, eos_token=eos_token)
        except SecurityError as exc:
            raise TemplateError(f"{self.path or self.name}: template refused by the sandbox ({exc}); "
                                "templates may only format messages") from None
        except jinja2.TemplateError as exc:
            raise TemplateError(f"{self.path or self.name}: template failed to render: {exc}") from None

    @property
    def stop_strings(self) -> list[str]:
        """Turn markers that end an assistant turn: the assistant suffix and the next user prefix."""
        a, u1, u2 = (SENTINEL.format(x) for x in ("A1", "U1", "U2"))
        prompt = self.render([{"role": "user", "content": u1}], add_generation_prompt=True)
        one = self.render([{"role": "user", "content": u1}, {"role": "assistant", "content": a}])
        two = self.render([{"role": "user", "content": u1}, {"role": "assistant", "content": a},
                           {"role": "user", "content": u2}])
        suffix = one.split(a, 1)[1]
        between = two.split(a, 1)[1].split(u2, 1)[0]
        prefix = between[len(suffix):] if between.startswith(suffix) else between
        stops = []
        for piece in (suffix, prefix):
            piece = piece.strip()
            if piece and piece not in stops:
                stops.append(piece)
        if not stops:  # a template whose turns are separated by whitespace alone
            stops.append(prompt.split(u1, 1)[0].strip() or "\n\n")
        return stops


def _raise(message):
    raise jinja2.exceptions.TemplateError(message)


def _strftime_now(fmt):
    return datetime.now().strftime(fmt)


class _Sandbox(ImmutableSandboxedEnvironment):
    """The immutable sandbox, failing at once on an unsafe attribute.

    The stock sandbox returns an undefined value that prints as an empty string,
    so ``{{ ''.__class__ }}`` would render silently; here it is refused.
    """

    def unsafe_undefined(self, obj, attribute):
        raise SecurityError(f"access to attribute {attribute!r} of {type(obj).__name__!r} object is unsafe.")


@lru_cache(maxsize=64)
def _compile(source: str) -> jinja2.Template:
    # The same environment settings as the webui and transformers' chat templates.
    env = _Sandbox(trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"])
    env.globals["raise_exception"] = _raise
    env.globals["strftime_now"] = _strftime_now
    return env.from_string(source)


def _lit(text: str) -> str:
    """A Jinja string literal for ``text``."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'").replace("\n", "\\n") + "'"


def legacy_to_jinja(data: dict) -> str:
    """Compile the pre-December-2023 webui format into an equivalent Jinja chat template."""
    names = {"<|user|>": str(data.get("user", "")).strip(), "<|bot|>": str(data.get("bot", "")).strip()}
    turn = str(data["turn_template"]).replace("\\n", "\n")
    if "<|bot|>" not in turn or "<|user-message|>" not in turn or "<|bot-message|>" not in turn:
        raise ValueError("turn_template must contain <|user|>, <|user-message|>, <|bot|> and <|bot-message|>")
    user_part, bot_part = turn.split("<|bot|>", 1)
    bot_part = "<|bot|>" + bot_part
    for key, value in names.items():
        user_part, bot_part = user_part.replace(key, value), bot_part.replace(key, value)
    u_before, u_after = user_part.split("<|user-message|>", 1)
    b_before, b_after = bot_part.split("<|bot-message|>", 1)
    context = str(data.get("context", "") or "")
    default_system = str(data.get("system_message", "") or "")
    if "<|system-message|>" in context:
        c_before, c_after = context.split("<|system-message|>", 1)
        context_expr = f"{_lit(c_before)} + ns.system + {_lit(c_after)}"
    else:
        context_expr = _lit(context)
    return (
        f"{{%- set ns = namespace(system={_lit(default_system)}) -%}}\n"
        "{%- for message in messages -%}\n"
        "    {%- if message['role'] == 'system' -%}{%- set ns.system = message['content'] -%}{%- endif -%}\n"
        "{%- endfor -%}\n"
        f"{{{{- {context_expr} -}}}}\n"
        "{%- for message in messages -%}\n"
        "    {%- if message['role'] == 'user' -%}\n"
        f"        {{{{- {_lit(u_before)} + message['content'].strip() + {_lit(u_after)} -}}}}\n"
        "    {%- elif message['role'] == 'assistant' -%}\n"
        f"        {{{{- {_lit(b_before)} + message['content'].strip() + {_lit(b_after)} -}}}}\n"
        "    {%- endif -%}\n"
        "{%- endfor -%}\n"
        "{%- if add_generation_prompt -%}\n"
        f"    {{{{- {_lit(b_before.rstrip(' '))} -}}}}\n"
        "{%- endif -%}"
    )


def template_from_data(data, name: str, path: Path | None = None) -> Template:
    where = path or name
    if not isinstance(data, dict):
        raise TemplateError(f"{where}: an instruction template must be a mapping with 'instruction_template' "
                            f"(Jinja format) or {sorted(LEGACY_KEYS)} (older format)")
    if "instruction_template" in data:
        source, fmt = data["instruction_template"], "jinja"
        if not isinstance(source, str) or not source.strip():
            raise TemplateError(f"{where}: field 'instruction_template' must be a non-empty Jinja string")
    elif "turn_template" in data:
        unknown = set(data) - LEGACY_KEYS
        if unknown:
            raise TemplateError(f"{where}: unknown field(s) {sorted(unknown)} in an older-format template; "
                                f"allowed: {sorted(LEGACY_KEYS)}")
        try:
            source, fmt = legacy_to_jinja(data), "legacy"
        except ValueError as exc:
            raise TemplateError(f"{where}: field 'turn_template': {exc}") from None
    else:
        raise TemplateError(f"{where}: no 'instruction_template' (Jinja format) and no 'turn_template' "
                            "(older format); is this a webui instruction template?")
    try:
        _compile(source)
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateError(f"{where}: Jinja syntax error on line {exc.lineno} of 'instruction_template': {exc.message}") from None
    template = Template(name=name, path=path, jinja=source, format=fmt)
    # Sandbox check now, through the user and the assistant branches.
    template.render([{"role": "user", "content": "prueba"}, {"role": "assistant", "content": "respuesta"},
                     {"role": "user", "content": "prueba"}], add_generation_prompt=True)
    return template


def load_template(path: str | Path) -> Template:
    path = Path(path)
    return template_from_data(load_yaml(path, "instruction template"), name=path.stem, path=path)


def apply_to_tokenizer(tokenizer, template: Template):
    """Make ``template`` the tokenizer's chat template (what lm-eval's --apply_chat_template uses)."""
    tokenizer.chat_template = template.jinja
    return tokenizer


def prompt_completion(template: Template, messages: list[dict]) -> dict:
    """Split a conversation ending with an assistant turn into a prompt and its completion.

    The prompt is the conversation up to the last assistant turn rendered with
    the generation prompt (exactly what evaluation sends); the completion is the
    rest of the full rendering, so training sees the same text evaluation does.
    """
    if not messages or messages[-1].get("role") != "assistant":
        raise TemplateError(f"{template.path or template.name}: a training conversation must end with an assistant turn")
    prompt = template.render(messages[:-1], add_generation_prompt=True)
    full = template.render(messages)
    if not full.startswith(prompt):
        raise TemplateError(f"{template.path or template.name}: the rendering with add_generation_prompt is not a "
                            "prefix of the full conversation; the template's generation prompt does not match its "
                            "assistant turns")
    return {"prompt": prompt, "completion": full[len(prompt):]}
