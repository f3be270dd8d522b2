"""Instruction templates: both webui formats, our Spanish templates, the sandbox, and the tokenizer hook.

Expected prompts are written by hand from the format's rules, never produced
by the code under test. The older webui format (before December 2023) rendered
like this (``generate_chat_prompt``):

* the context, with ``<|system-message|>`` filled in, is prepended with no separator;
* each turn is the ``turn_template`` (``\\n`` = newline) with ``<|user|>``/``<|bot|>``
  replaced by the (stripped) names and the (stripped) messages put in;
* literal text such as ``<s>`` stays;
* the generation prompt is the bot part of the turn up to ``<|bot-message|>``,
  right-stripped of spaces.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest
import yaml

from benchmark.registry import REPO, load_registry
from benchmark.templates import (
    TemplateError,
    apply_to_tokenizer,
    load_template,
    prompt_completion,
    template_from_data,
)
from benchmark.yamlio import YamlError

WEBUI = REPO / "tests" / "fixtures" / "webui"
WEBUI_TEMPLATES = sorted(WEBUI.glob("instruction-templates*/*.yaml"))
LEGACY = WEBUI / "instruction-templates-2023-12-pre-jinja"
JINJA_2023 = WEBUI / "instruction-templates-2023-12"
OURS = REPO / "templates"

SYS_ES = ("Eres un asistente que responde siempre en español, de forma breve y precisa. "
          "Responde directamente, sin hacer preguntas de vuelta al usuario.")


def user(text):
    return {"role": "user", "content": text}


def assistant(text):
    return {"role": "assistant", "content": text}


def system(text):
    return {"role": "system", "content": text}


ONE = [user("Hola")]
THREE = [user("Hola"), assistant("Qué tal"), user("Bien")]
WITH_SYSTEM = [system("Sé breve."), user("Hola"), assistant("Qué tal"), user("Bien")]


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# ---------------------------------------------------------------- webui files

def test_webui_folders_are_there():
    # The parametrized tests below would silently collect nothing without them.
    folders = {p.parent.name for p in WEBUI_TEMPLATES}
    assert folders == {"instruction-templates", "instruction-templates-2023-12",
                       "instruction-templates-2023-12-pre-jinja"}, WEBUI
    assert len(WEBUI_TEMPLATES) >= 14


@pytest.mark.parametrize("path", WEBUI_TEMPLATES, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_every_webui_template_loads_and_renders(path):
    template = load_template(path)
    assert template.format == ("legacy" if path.parent == LEGACY else "jinja")
    prompt = template.render(THREE, add_generation_prompt=True)
    full = template.render(THREE + [assistant("Adiós")])
    for text in ("Hola", "Qué tal", "Bien"):
        assert text in prompt
    # The generation prompt is exactly where the assistant's turn starts.
    split = prompt_completion(template, THREE + [assistant("Adiós")])
    assert split["prompt"] == prompt
    assert split["prompt"] + split["completion"] == full
    assert split["completion"].strip().startswith("Adiós")
    # Stop strings are turn markers: they occur in a rendered conversation, not in the messages.
    assert template.stop_strings
    for stop in template.stop_strings:
        assert stop in full
        assert stop not in "Hola Qué tal Bien Adiós"


LEGACY_CASES = [
    # (file, messages, add_generation_prompt, expected)
    ("Alpaca", ONE, True,
     "Below is an instruction that describes a task. Write a response that appropriately completes the request."
     "\n\n### Instruction:\nHola\n\n### Response:\n"),
    ("Alpaca", [system("Sé breve."), user("  Hola  "), assistant(" Buenas\n"), user("¿Y?")], False,
     "Sé breve.\n\n### Instruction:\nHola\n\n### Response:\nBuenas\n\n### Instruction:\n¿Y?\n\n"),
    ("ChatML", ONE, True,
     "<|im_start|>system\n<|im_end|>\n<|im_start|>user\nHola<|im_end|>\n<|im_start|>assistant\n"),
    ("ChatML", [system("Sé breve."), user("Hola"), assistant("Qué tal")], False,
     "<|im_start|>system\nSé breve.<|im_end|>\n<|im_start|>user\nHola<|im_end|>\n"
     "<|im_start|>assistant\nQué tal<|im_end|>\n"),
    ("Llama-v2", ONE, True,
     "[INST] <<SYS>>\nAnswer the questions.\n<</SYS>>\n\nHola [/INST] "),
    ("Llama-v2", WITH_SYSTEM, True,
     "[INST] <<SYS>>\nSé breve.\n<</SYS>>\n\nHola [/INST] Qué tal </s><s>[INST] Bien [/INST] "),
    ("Llama-v2", THREE, False,
     "[INST] <<SYS>>\nAnswer the questions.\n<</SYS>>\n\nHola [/INST] Qué tal </s><s>[INST] Bien [/INST] "),
    # Mistral's context is empty and has no <|system-message|>: a system message has nowhere to go.
    ("Mistral", WITH_SYSTEM, True, "[INST] Hola [/INST]Qué tal</s> [INST] Bien [/INST]"),
    ("Mistral", [user(" Hola "), assistant(" Qué tal ")], False, "[INST] Hola [/INST]Qué tal</s> "),
]


@pytest.mark.parametrize("name,messages,add_generation_prompt,expected", LEGACY_CASES,
                         ids=[f"{c[0]}-{i}" for i, c in enumerate(LEGACY_CASES)])
def test_legacy_webui_templates_render_as_the_webui_did(name, messages, add_generation_prompt, expected):
    template = load_template(LEGACY / f"{name}.yaml")
    assert template.render(messages, add_generation_prompt=add_generation_prompt) == expected


CUSTOM_LEGACY = {
    "user": " Usuario ", "bot": "Asistente",
    "turn_template": "<|user|>: <|user-message|>\\n<s><|bot|>: <|bot-message|>\\n\\n",
    "context": "Contexto: <|system-message|>.", "system_message": "por defecto",
}


@pytest.mark.parametrize("messages,add_generation_prompt,expected", [
    # context with no separator; names stripped; literal <s> kept; prompt "Asistente: " -> "Asistente:".
    (ONE, True, "Contexto: por defecto.Usuario: Hola\n<s>Asistente:"),
    ([system("mío"), user("Hola"), assistant("Buenas")], False,
     "Contexto: mío.Usuario: Hola\n<s>Asistente: Buenas\n\n"),
    ([], True, "Contexto: por defecto.Asistente:"),
])
def test_legacy_rules_on_a_made_up_template(messages, add_generation_prompt, expected):
    template = template_from_data(dict(CUSTOM_LEGACY), name="custom")
    assert template.format == "legacy"
    assert template.render(messages, add_generation_prompt=add_generation_prompt) == expected


def test_legacy_context_without_placeholder_and_no_system_message():
    data = {"user": "U", "bot": "B", "turn_template": "<|user|>: <|user-message|> <|bot|>: <|bot-message|>|",
            "context": "CTX "}
    template = template_from_data(data, name="bare")
    assert template.render([system("ignorado"), user("x"), assistant("y")], add_generation_prompt=True) == \
        "CTX U: x B: y|B:"


# The two renderings the older format defines: a prompt (ending with a user turn, with the generation
# prompt) and a whole conversation (ending with an assistant turn, without it). Other combinations were
# never produced by the webui; ChatML's "<|im_start|>", for one, sits in the user part of its turn_template.
TWIN_CASES = [
    (ONE, True), (THREE, True), (WITH_SYSTEM, True),
    ([user("Hola"), assistant("Qué tal")], False), (THREE + [assistant("Adiós")], False),
    (WITH_SYSTEM + [assistant("Adiós")], False),
]


@pytest.mark.parametrize("name", ["Alpaca", "ChatML", "Llama-v2", "Mistral"])
@pytest.mark.parametrize("case", range(len(TWIN_CASES)))
def test_legacy_file_renders_like_its_jinja_twin(name, case):
    messages, add_generation_prompt = TWIN_CASES[case]
    if name == "Mistral" and messages[0]["role"] == "system":
        # The older Mistral file had no place for a system message; its Jinja twin prints it.
        messages = messages[1:]
    legacy = load_template(LEGACY / f"{name}.yaml")
    jinja = load_template(JINJA_2023 / f"{name}.yaml")
    assert legacy.render(messages, add_generation_prompt) == jinja.render(messages, add_generation_prompt)


# ---------------------------------------------------------------- our templates

Q = "¿Cuál es la capital de Ecuador?"
CHAT = [system("Responde en una palabra."), user("¿Capital de Ecuador?"), assistant("Quito"), user("¿Y de Perú?")]

OUR_EXPECTED = {
    "ChatML-es": (
        f"<|im_start|>system\n{SYS_ES}<|im_end|>\n<|im_start|>user\n{Q}<|im_end|>\n<|im_start|>assistant\n",
        "<|im_start|>system\nResponde en una palabra.<|im_end|>\n<|im_start|>user\n¿Capital de Ecuador?<|im_end|>\n"
        "<|im_start|>assistant\nQuito<|im_end|>\n<|im_start|>user\n¿Y de Perú?<|im_end|>\n<|im_start|>assistant\n",
    ),
    "Gemma-es": (
        f"<start_of_turn>user\n{SYS_ES}\n\n{Q}<end_of_turn>\n<start_of_turn>model\n",
        "<start_of_turn>user\nResponde en una palabra.\n\n¿Capital de Ecuador?<end_of_turn>\n"
        "<start_of_turn>model\nQuito<end_of_turn>\n<start_of_turn>user\n¿Y de Perú?<end_of_turn>\n"
        "<start_of_turn>model\n",
    ),
    "Mistral-es": (
        f"{SYS_ES}\n\n[INST] {Q} [/INST]",
        "Responde en una palabra.\n\n[INST] ¿Capital de Ecuador? [/INST]Quito</s>[INST] ¿Y de Perú? [/INST]",
    ),
    "Llama-v2-es": (
        f"[INST] <<SYS>>\n{SYS_ES}\n<</SYS>>\n\n{Q} [/INST] ",
        "[INST] <<SYS>>\nResponde en una palabra.\n<</SYS>>\n\n¿Capital de Ecuador? [/INST] Quito </s><s>[INST] "
        "¿Y de Perú? [/INST] ",
    ),
    "Falcon-es": (
        f"{SYS_ES}\n<HUMAN>: {Q}\n<ASSISTANT>:",
        "Responde en una palabra.\n<HUMAN>: ¿Capital de Ecuador?\n<ASSISTANT>: Quito\n<HUMAN>: ¿Y de Perú?\n"
        "<ASSISTANT>:",
    ),
}


def test_our_template_files_are_the_five_expected():
    assert {p.stem for p in OURS.glob("*.yaml")} == set(OUR_EXPECTED)


@pytest.mark.parametrize("name", sorted(OUR_EXPECTED))
def test_our_templates_are_plain_webui_files(name):
    # Copyable into a webui install: the Jinja format's single key, nothing of ours.
    data = yaml.safe_load((OURS / f"{name}.yaml").read_text(encoding="utf-8"))
    assert set(data) == {"instruction_template"}
    assert load_template(OURS / f"{name}.yaml").format == "jinja"


@pytest.mark.parametrize("name", sorted(OUR_EXPECTED))
def test_our_templates_with_the_spanish_default_system_message(name):
    template = load_template(OURS / f"{name}.yaml")
    assert template.render([user(Q)], add_generation_prompt=True) == OUR_EXPECTED[name][0]


@pytest.mark.parametrize("name", sorted(OUR_EXPECTED))
def test_our_templates_with_a_given_system_message(name):
    template = load_template(OURS / f"{name}.yaml")
    rendered = template.render(CHAT, add_generation_prompt=True)
    assert rendered == OUR_EXPECTED[name][1]
    assert SYS_ES not in rendered


def test_registry_models_use_our_templates():
    registry = load_registry()
    used = {entry.template.stem for entry in registry.models.values()}
    assert used == set(OUR_EXPECTED)


STOPS = [
    (OURS / "ChatML-es.yaml", ["<|im_end|>", "<|im_start|>user"]),
    (OURS / "Gemma-es.yaml", ["<end_of_turn>", "<start_of_turn>user"]),
    (OURS / "Mistral-es.yaml", ["</s>", "[INST]"]),
    (OURS / "Llama-v2-es.yaml", ["</s><s>[INST]"]),
    (OURS / "Falcon-es.yaml", ["<HUMAN>:"]),
    (LEGACY / "Alpaca.yaml", ["### Instruction:"]),
    (LEGACY / "ChatML.yaml", ["<|im_end|>", "<|im_start|>user"]),
    (LEGACY / "Mistral.yaml", ["</s>", "[INST]"]),
    (WEBUI / "instruction-templates" / "Vicuna-v1.1.yaml", ["</s>", "USER:"]),
    (WEBUI / "instruction-templates" / "Llama-v3.yaml", ["<|eot_id|>", "<|start_header_id|>user<|end_header_id|>"]),
    (WEBUI / "instruction-templates" / "Open Assistant.yaml", ["<|endoftext|>", "<|prompter|>"]),
]


@pytest.mark.parametrize("path,expected", STOPS, ids=lambda v: v.stem if isinstance(v, Path) else None)
def test_stop_strings(path, expected):
    assert load_template(path).stop_strings == expected


def test_stop_strings_when_turns_are_separated_by_blank_lines_only():
    template = template_from_data({"instruction_template": "{% for m in messages %}{{ m['content'] }}\n\n{% endfor %}"},
                                  name="plain")
    assert template.stop_strings == ["\n\n"]


# ---------------------------------------------------------------- training split

@pytest.mark.parametrize("name", sorted(OUR_EXPECTED))
def test_prompt_completion_splits_where_evaluation_stops(name):
    template = load_template(OURS / f"{name}.yaml")
    messages = CHAT + [assistant("Lima")]
    split = prompt_completion(template, messages)
    assert split["prompt"] == OUR_EXPECTED[name][1]          # exactly what evaluation sends
    assert split["prompt"] + split["completion"] == template.render(messages)
    assert split["completion"].lstrip().startswith("Lima")


@pytest.mark.parametrize("messages", [[], [user("Hola")], [user("Hola"), assistant("Hola"), user("¿Y?")],
                                      [system("x")]], ids=["empty", "user", "ends-with-user", "system"])
def test_prompt_completion_needs_a_final_assistant_turn(messages):
    template = load_template(OURS / "ChatML-es.yaml")
    with pytest.raises(TemplateError, match=r"ChatML-es\.yaml.*must end with an assistant turn"):
        prompt_completion(template, messages)


def test_prompt_completion_refuses_a_generation_prompt_that_does_not_match_the_turns(tmp_path):
    source = ("{% for m in messages %}{% if m['role'] == 'user' %}U: {{ m['content'] }}\n"
              "{% else %}B: {{ m['content'] }}\n{% endif %}{% endfor %}"
              "{% if add_generation_prompt %}A: {% endif %}")
    path = write(tmp_path, "Mismatch.yaml", yaml.safe_dump({"instruction_template": source}))
    with pytest.raises(TemplateError, match=r"Mismatch\.yaml.*not a prefix"):
        prompt_completion(load_template(path), [user("x"), assistant("y")])


# ---------------------------------------------------------------- tokenizer hook

@pytest.fixture(scope="module")
def small_tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = ["[UNK]", "<s>", "</s>", "hola", "quito", "lima"]
    backend = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="[UNK]", bos_token="<s>", eos_token="</s>")


BOS_EOS = {"instruction_template": "{{ bos_token }}{% for m in messages %}[{{ m['role'] }}] {{ m['content'] }}"
                                   "{{ eos_token }}{% endfor %}{% if add_generation_prompt %}[assistant] {% endif %}"}


@pytest.mark.parametrize("name", sorted(OUR_EXPECTED) + ["bos-eos"])
@pytest.mark.parametrize("messages", [[user(Q)], CHAT, CHAT + [assistant("Lima")]], ids=["one", "chat", "full"])
@pytest.mark.parametrize("add_generation_prompt", [True, False])
def test_tokenizer_chat_template_equals_render(small_tokenizer, name, messages, add_generation_prompt):
    template = (template_from_data(BOS_EOS, name="bos-eos") if name == "bos-eos"
                else load_template(OURS / f"{name}.yaml"))
    tokenizer = apply_to_tokenizer(small_tokenizer, template)
    assert tokenizer.chat_template == template.jinja
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)
    assert text == template.render(messages, add_generation_prompt=add_generation_prompt,
                                   bos_token=tokenizer.bos_token, eos_token=tokenizer.eos_token)


def test_chat_template_survives_save_and_reload(small_tokenizer, tmp_path):
    from transformers import AutoTokenizer

    template = load_template(OURS / "Gemma-es.yaml")
    apply_to_tokenizer(small_tokenizer, template).save_pretrained(tmp_path)
    reloaded = AutoTokenizer.from_pretrained(tmp_path)
    assert reloaded.apply_chat_template(CHAT, tokenize=False, add_generation_prompt=True) == OUR_EXPECTED["Gemma-es"][1]


def test_prepared_smollm2_tokenizer_carries_our_template(prepared_smollm2):
    """The prepared checkpoint (what lm_eval --apply_chat_template reads) formats as the trainer does."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(prepared_smollm2)
    template = load_template(load_registry().model("smollm2-135m-instruct").template)
    assert tokenizer.chat_template == template.jinja
    for messages in ([user(Q)], CHAT):
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        assert text == template.render(messages, add_generation_prompt=True)
    assert tokenizer.apply_chat_template([user(Q)], tokenize=False, add_generation_prompt=True) == \
        OUR_EXPECTED["ChatML-es"][0]
    # Training tokens = evaluation tokens: the prompt's ids are a prefix of the full conversation's ids.
    split = prompt_completion(template, CHAT + [assistant("Lima")])
    prompt_ids = tokenizer(split["prompt"], add_special_tokens=False)["input_ids"]
    full_ids = tokenizer(split["prompt"] + split["completion"], add_special_tokens=False)["input_ids"]
    assert full_ids[:len(prompt_ids)] == prompt_ids


# ---------------------------------------------------------------- webui globals

def test_webui_globals_are_available():
    source = ("{{ bos_token }}{{ strftime_now('%Y') }}|{{ messages | length }}"
              "{% if add_generation_prompt %}|gen{{ eos_token }}{% endif %}")
    template = template_from_data({"instruction_template": source}, name="globals")
    year = datetime.now().strftime("%Y")
    assert template.render(ONE, add_generation_prompt=True, bos_token="<s>", eos_token="</s>") == f"<s>{year}|1|gen</s>"


def test_raise_exception_becomes_a_template_error_naming_the_file(tmp_path):
    source = ("{% for m in messages %}{% if m['role'] == 'system' %}{{ raise_exception('sin rol system') }}"
              "{% endif %}{{ m['content'] }}{% endfor %}")
    path = write(tmp_path, "NoSystem.yaml", yaml.safe_dump({"instruction_template": source}))
    template = load_template(path)
    assert template.render(ONE) == "Hola"
    with pytest.raises(TemplateError, match=r"NoSystem\.yaml.*sin rol system"):
        template.render(WITH_SYSTEM)


# ---------------------------------------------------------------- sandbox and bad files

ESCAPES = [
    "{{ ''.__class__.__mro__ }}",
    "{{ cycler.__init__.__globals__ }}",
    "{{ self.__init__.__globals__ }}",
    "{{ ''.__class__ }}",
    "{{ raise_exception.__globals__ }}",
    "{{ messages[0].__class__.__mro__[1].__subclasses__() }}",
    "{{ joiner.__init__.__globals__['os'] }}",
    "{% set _ = messages.append({'role': 'user', 'content': 'x'}) %}{{ messages | length }}",
    "{{ lipsum.__globals__['os'].popen('id').read() }}",
]


@pytest.mark.parametrize("expression", ESCAPES)
def test_sandbox_refuses_python_internals(tmp_path, expression):
    path = write(tmp_path, "Evil.yaml", yaml.safe_dump({"instruction_template": "{{ 'x' }}" + expression}))
    with pytest.raises(TemplateError, match=r"Evil\.yaml: template refused by the sandbox"):
        load_template(path)


def test_sandbox_refuses_internals_hidden_in_the_assistant_branch(tmp_path):
    source = ("{% for m in messages %}{% if m['role'] == 'assistant' %}{{ cycler.__init__.__globals__ }}"
              "{% endif %}{{ m['content'] }}{% endfor %}")
    path = write(tmp_path, "Sneaky.yaml", yaml.safe_dump({"instruction_template": source}))
    with pytest.raises(TemplateError, match=r"Sneaky\.yaml: template refused by the sandbox"):
        load_template(path)


def test_sandbox_refusal_at_render_time_names_the_file(tmp_path):
    source = ("{% for m in messages %}{% if m['role'] == 'system' %}{{ ''.__class__.__mro__ }}"
              "{% endif %}{{ m['content'] }}{% endfor %}")
    path = write(tmp_path, "Late.yaml", yaml.safe_dump({"instruction_template": source}))
    template = load_template(path)
    with pytest.raises(TemplateError, match=r"Late\.yaml: template refused by the sandbox"):
        template.render(WITH_SYSTEM)


def test_jinja_syntax_error_names_the_file_and_line(tmp_path):
    text = ("instruction_template: |-\n"
            "  {%- for message in messages -%}\n"
            "  {{ message['content'] }\n"
            "  {%- endfor -%}\n")
    path = write(tmp_path, "Broken.yaml", text)
    with pytest.raises(TemplateError, match=r"Broken\.yaml: Jinja syntax error on line 2\b"):
        load_template(path)


@pytest.mark.parametrize("text,message", [
    ("user: a\nbot: b\ncontext: c\n", r"no 'instruction_template' .*and no 'turn_template'"),
    ("name: Alpaca\n", r"no 'instruction_template' .*and no 'turn_template'"),
    ("- a\n- b\n", r"must be a mapping"),
    ("instruction_template: ''\n", r"'instruction_template' must be a non-empty Jinja string"),
    ("turn_template: '<|user|><|user-message|>'\n", r"'turn_template': .*<\|bot-message\|>"),
    ("turn_template: '<|user|><|user-message|><|bot|><|bot-message|>'\nchat_template: x\n",
     r"unknown field\(s\) \['chat_template'\]"),
], ids=["legacy-without-turn-template", "unrelated", "list", "empty-jinja", "turn-without-bot", "unknown-field"])
def test_bad_template_files_are_refused_naming_the_file(tmp_path, text, message):
    path = write(tmp_path, "Bad.yaml", text)
    with pytest.raises(TemplateError, match=r"Bad\.yaml: .*" + message):
        load_template(path)


def test_missing_template_file(tmp_path):
    with pytest.raises(YamlError, match=r"Nope\.yaml: instruction template not found"):
        load_template(tmp_path / "Nope.yaml")

