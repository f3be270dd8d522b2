"""Inputs the harness cannot trust: templates, presets, registry and task YAMLs, task data files.

No model is needed. Each payload would do something (read globals, run a
command, exhaust memory) if it got through; the tests check that it is refused
with an error naming the file, and that nothing ran.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from benchmark import lawdata
from benchmark.presets import load_preset
from benchmark.registry import REPO, load_registry
from benchmark.tasks import check_task_yamls, task_manager
from benchmark.templates import TemplateError, load_template, template_from_data
from benchmark.yamlio import MAX_BYTES, YamlError, load_yaml

# ------------------------------------------------------------------ Jinja templates ---

JINJA_ESCAPES = [
    "{{ ''.__class__.__mro__ }}",
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ cycler.__init__.__globals__.os.system('touch {marker}') }}",
    "{{ joiner.__init__.__globals__['os'].popen('touch {marker}').read() }}",
    "{{ lipsum.__globals__['os'].system('touch {marker}') }}",
    "{{ raise_exception.__globals__['__builtins__']['open']('{marker}', 'w') }}",
    "{{ namespace.__init__.__globals__ }}",
    "{% for m in messages %}{{ m.__class__.__base__.__subclasses__() }}{% endfor %}",
    "{{ messages.append({'role': 'user', 'content': 'x'}) }}",      # the immutable sandbox: no mutation
    "{{ (messages|first).update({'content': 'x'}) }}",
    "{{ self._TemplateReference__context }}",
    "{{ ''.format.__globals__ }}",
]


@pytest.mark.parametrize("payload", JINJA_ESCAPES)
def test_template_reaching_for_python_internals_is_refused(payload, tmp_path):
    marker = tmp_path / "pwned"
    source = payload.replace("{marker}", str(marker))
    with pytest.raises(TemplateError, match="refused by the sandbox"):
        template_from_data({"instruction_template": source}, name="evil")
    assert not marker.exists()


def test_template_file_refusal_names_the_file(tmp_path):
    path = tmp_path / "Evil.yaml"
    path.write_text("instruction_template: \"{{ cycler.__init__.__globals__ }}\"\n")
    with pytest.raises(TemplateError) as info:
        load_template(path)
    assert str(path) in str(info.value) and "sandbox" in str(info.value)


def test_every_shipped_template_still_renders():
    for path in sorted((REPO / "templates").glob("*.yaml")):
        assert load_template(path).render([{"role": "user", "content": "hola"}], add_generation_prompt=True)


# ------------------------------------------------------------------ YAML: presets, registry, tasks ---

def _python_object(marker):
    return f"temperature: !!python/object/apply:os.system ['touch {marker}']\n"


def _python_name(marker):
    return "temperature: !!python/name:os.system\n"


def _python_module(marker):
    return "a: !!python/module:os\n"


def _huge(marker):
    return "# padding\n" * (MAX_BYTES // 10 + 1) + "temperature: 0.5\n"


def _deep_flow(marker):
    return "a: " + "[" * 40 + "]" * 40 + "\n"


def _deep_block(marker):
    return "".join("  " * i + f"k{i}:\n" for i in range(40)) + "  " * 40 + "v: 1\n"


def _very_deep(marker):
    return "a: " + "[" * 50_000 + "]" * 50_000 + "\n"


def _billion_laughs(marker):
    lines = ["l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for i in range(1, 9):
        lines.append(f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 9) + "]")
    return "\n".join(lines) + "\n"


def _not_utf8(marker):
    return b"temperature: 0.5\ncomment: \xe9t\xe9\n"


YAML_ATTACKS = [
    (_python_object, r"line 1 tag not allowed"),
    (_python_name, r"line 1 tag not allowed"),
    (_python_module, r"line 1 tag not allowed"),
    (_huge, rf"over the {MAX_BYTES}-byte limit"),
    (_deep_flow, r"nested deeper than 32 levels"),
    (_deep_block, r"nested deeper than 32 levels"),
    (_very_deep, r"nested (deeper than 32 levels|too deeply to parse)"),
    (_billion_laughs, r"expands to more than \d+ values"),
    (_not_utf8, r"not UTF-8"),
]
LOADERS = {
    "preset": load_preset,
    "registry": load_registry,
    "template": load_template,
    "task": lambda path: load_yaml(path, "task YAML", functions=True),
}


@pytest.mark.parametrize("make, error", YAML_ATTACKS, ids=[m.__name__.strip("_") for m, _ in YAML_ATTACKS])
@pytest.mark.parametrize("kind", LOADERS)
def test_hostile_yaml_is_refused(kind, make, error, tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / f"{kind}.yaml"
    content = make(marker)
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(YamlError) as info:
        LOADERS[kind](path)
    assert str(path) in str(info.value)
    assert re.search(error, str(info.value)), str(info.value)
    assert not marker.exists()


def test_task_yaml_function_tag_is_kept_as_text_not_imported():
    cfg = load_yaml(REPO / "tasks" / "ecuador_law_es" / "_mc_template_yaml", functions=True)
    assert cfg["custom_dataset"] == "!function utils.load_dataset"


def test_hostile_task_yaml_is_reported_by_the_runner_and_never_run(tmp_path):
    """The runner names the file and line; lm-eval's own index skips it without executing anything."""
    marker = tmp_path / "pwned"
    bad = tmp_path / "evil.yaml"
    bad.write_text(f"task: evil\noutput_type: generate_until\ndoc_to_text: !!python/object/apply:os.system "
                   f"['touch {marker}']\n")
    (tmp_path / "deep.yaml").write_text("task: deep\nmetadata: " + "[" * 40 + "]" * 40 + "\n")
    problems = check_task_yamls([tmp_path])
    assert set(problems) == {bad.resolve(), (tmp_path / "deep.yaml").resolve()}
    assert f"{bad}: line 3 tag not allowed" in problems[bad.resolve()]
    tm = task_manager(None, [tmp_path])
    assert "evil" not in tm.all_tasks
    assert not marker.exists()


def test_task_yaml_including_a_broken_base_is_reported(tmp_path):
    (tmp_path / "_base_yaml").write_text("output_type: [multiple_choice\n")
    (tmp_path / "child.yaml").write_text("include: _base_yaml\ntask: child\n")
    problems = check_task_yamls([tmp_path])
    assert list(problems) == [(tmp_path / "child.yaml").resolve()]
    assert "_base_yaml" in problems[(tmp_path / "child.yaml").resolve()]


def test_shipped_task_yamls_are_all_readable():
    assert check_task_yamls([REPO / "tasks"]) == {}


# ------------------------------------------------------------------ task data files ---

@pytest.fixture
def law_data(tmp_path):
    """A copy of ecuador_law_es's test split (one law file) in a temporary data folder."""
    source = sorted((REPO / "tasks" / "ecuador_law_es" / "data" / "test").glob("*.jsonl"))[0]
    folder = tmp_path / "data" / "test"
    folder.mkdir(parents=True)
    rows = [json.loads(x) for x in source.read_text(encoding="utf-8").splitlines() if x.strip()][:3]
    return folder / source.name, rows


def _lines(rows):
    return [json.dumps(r, ensure_ascii=False).encode() for r in rows]


def _latin1(rows):
    lines = _lines(rows)
    lines[1] = json.dumps(rows[1], ensure_ascii=False).encode("latin-1", "replace")
    return lines


def _bad_json(rows):
    lines = _lines(rows)
    lines[2] = lines[2][:-5]
    return lines


def _missing_field(rows):
    return _lines([rows[0], rows[1], {k: v for k, v in rows[2].items() if k != "respuesta"}])


def _wrong_type(rows):
    return _lines([rows[0], {**rows[1], "correcta": "2"}, rows[2]])


def _out_of_range(rows):
    return _lines([{**rows[0], "correcta": 7}, rows[1], rows[2]])


def _array_row(rows):
    return _lines([rows[0], rows[1]]) + [b"[1, 2, 3]"]


def _duplicate_id(rows):
    return _lines([rows[0], rows[1], {**rows[2], "id": rows[0]["id"]}])


@pytest.mark.parametrize("make, line, message", [
    (_latin1, 2, "not UTF-8"),
    (_bad_json, 3, "not valid JSON"),
    (_missing_field, 3, "missing field 'respuesta'"),
    (_wrong_type, 2, "field 'correcta' must be int, got str"),
    (_out_of_range, 1, "field 'correcta' is 7"),
    (_array_row, 3, "each line must be a JSON object"),
    (_duplicate_id, 3, "duplicate id"),
])
def test_bad_task_data_names_file_and_line(law_data, make, line, message):
    path, rows = law_data
    path.write_bytes(b"\n".join(make(rows)) + b"\n")
    with pytest.raises(lawdata.DataError) as info:
        lawdata.load_split("test", path.parent.parent)
    assert str(info.value).startswith(f"{path}:{line}: "), str(info.value)
    assert message in str(info.value)


def test_good_task_data_loads(law_data):
    path, rows = law_data
    path.write_bytes(b"\n".join(_lines(rows)) + b"\n")
    assert [r["id"] for r in lawdata.load_split("test", path.parent.parent)] == [r["id"] for r in rows]


# ------------------------------------------------------------------ trust_remote_code ---

def test_trust_remote_code_is_never_switched_on():
    """No code, recipe or task of the project turns on trust_remote_code (remote Python from the Hub)."""
    pattern = re.compile(r"trust_remote_code\s*(=|:)\s*(True|true|1|yes)\b")
    offenders = []
    for folder in ("benchmark", "training", "tasks", "leaderboard", "adapters", "presets", "templates"):
        for path in (REPO / folder).rglob("*"):
            if path.is_file() and path.suffix in {".py", ".yaml", ".yml", ".json", ""} and "__pycache__" not in path.parts:
                text = path.read_text(encoding="utf-8", errors="replace")
                offenders += [f"{path.relative_to(REPO)}: {m.group(0)}" for m in pattern.finditer(text)]
    assert offenders == []


@pytest.mark.parametrize("loader, key", [("preset", "top_p"), ("template", "instruction_template")])
@pytest.mark.parametrize("tag", ["!!python/object/apply:os.system", "!!python/object/new:os.system",
                                 "!!python/name:os.system", "!!python/object:pathlib.Path"])
def test_python_object_tags_in_presets_and_templates_are_refused_and_never_run(tmp_path, loader, key, tag):
    from benchmark.presets import load_preset
    from benchmark.templates import load_template
    from benchmark.yamlio import YamlError

    marker = tmp_path / "pwned"
    path = tmp_path / "Tag.yaml"
    path.write_text(f"temperature: 0.5\n{key}: {tag} ['touch {marker}']\n", encoding="utf-8")
    with pytest.raises(YamlError, match=r"Tag\.yaml: line 2 tag not allowed"):
        {"preset": load_preset, "template": load_template}[loader](path)
    assert not marker.exists()

