"""Safe YAML loading with limits: the only way this project reads user YAML.

``yaml.safe_load`` refuses Python-object tags (``!!python/object``); on top of
that we refuse files that are too large, too deeply nested, or that expand
aliases into a huge structure ("billion laughs").
"""

from __future__ import annotations

from pathlib import Path

import yaml

MAX_BYTES = 1_000_000    # no preset, template or registry is anywhere near 1 MB
MAX_DEPTH = 32           # nesting levels
MAX_NODES = 200_000      # after alias expansion


class YamlError(ValueError):
    """A YAML file that cannot be used; the message names the file and the fix."""


class _TaskLoader(yaml.SafeLoader):
    """Safe loading plus lm-eval's ``!function module.name`` tag, kept as text (nothing is imported)."""


_TaskLoader.add_constructor("!function", lambda loader, node: f"!function {loader.construct_scalar(node)}")


def _check_shape(value, path: Path) -> None:
    nodes = 0
    stack = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        nodes += 1
        if depth > MAX_DEPTH:
            raise YamlError(f"{path}: nested deeper than {MAX_DEPTH} levels; flatten the file")
        if nodes > MAX_NODES:
            raise YamlError(f"{path}: expands to more than {MAX_NODES} values (aliases?); refusing to load it")
        if isinstance(node, dict):
            stack.extend((v, depth + 1) for v in node.values())
            stack.extend((k, depth + 1) for k in node.keys())
        elif isinstance(node, list):
            stack.extend((v, depth + 1) for v in node)


def load_yaml(path: str | Path, what: str = "YAML file", functions: bool = False):
    """Parse ``path`` safely; every error names the file (and line, when YAML knows it).

    ``functions=True`` also accepts lm-eval's ``!function`` tag (task YAMLs), as a plain string.
    """
    path = Path(path)
    if not path.is_file():
        raise YamlError(f"{path}: {what} not found")
    size = path.stat().st_size
    if size > MAX_BYTES:
        raise YamlError(f"{path}: {what} is {size} bytes, over the {MAX_BYTES}-byte limit")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise YamlError(f"{path}: not UTF-8 (byte {exc.start}); re-save it as UTF-8") from None
    try:
        value = yaml.load(text, Loader=_TaskLoader if functions else yaml.SafeLoader)
    except yaml.constructor.ConstructorError as exc:
        mark = f" line {exc.problem_mark.line + 1}" if exc.problem_mark else ""
        raise YamlError(f"{path}:{mark} tag not allowed ({exc.problem}); only plain YAML values are accepted") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise YamlError(f"{path}:{where} YAML syntax error: {problem}") from None
    except RecursionError:
        raise YamlError(f"{path}: nested too deeply to parse") from None
    _check_shape(value, path)
    return value
