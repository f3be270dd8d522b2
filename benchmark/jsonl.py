"""The one validating JSONL reader: every data file of the project goes through it.

Each problem names the file and the line (and says how to fix it); the caller chooses the exception,
so a task's loader keeps its own error type::

    rows = read_jsonl(path, error=lambda path, line, problem: DataError(f"{path}:{line}: {problem}"))
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path


class JsonlError(ValueError):
    """A JSONL file that cannot be read as one JSON object per line."""


def _default_error(path, line: int, problem: str) -> Exception:
    return JsonlError(f"{path}:{line}: {problem}")


def read_jsonl(path: Path | str, error: Callable[[Path, int, str], Exception] = _default_error
               ) -> list[tuple[int, dict]]:
    """``(line number, object)`` for every non-blank line; UTF-8, JSON and object-ness are checked."""
    path = Path(path)
    rows = []
    for lineno, line in enumerate(path.read_bytes().split(b"\n"), start=1):
        if not line.strip():
            continue
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise error(path, lineno, f"not UTF-8 ({exc.reason} at byte {exc.start}); re-save the file as UTF-8") from None
        try:
            row = json.loads(text)
        except json.JSONDecodeError as exc:
            raise error(path, lineno, f"not valid JSON ({exc.msg}, column {exc.colno})") from None
        if not isinstance(row, dict):
            raise error(path, lineno, "each line must be a JSON object")
        rows.append((lineno, row))
    return rows
