"""Write ``requirements.lock``: the exact version of every package in the project's environment.

``scripts/setup.sh`` installs with ``pip install -c requirements.lock``, so two set-ups months apart
get the same transformers, lm-eval, datasets..., and ``tests/test_lock.py`` fails when the
installed versions drift from the lock. Refresh it after changing ``pyproject.toml``::

    .venv/bin/python -m pip install --upgrade -e ".[test]"   # resolve anew
    .venv/bin/python scripts/lock.py                          # write requirements.lock
    .venv/bin/python -m pytest -q                             # the figures in the docs still hold?

Local version labels are dropped (``torch==2.13.0+cpu`` is locked as ``torch==2.13.0``), so the
same lock serves a CUDA build of the same version.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

LOCK = Path(__file__).resolve().parent.parent / "requirements.lock"
HEADER = ("# Exact versions of the project's environment; installed by scripts/setup.sh as pip constraints.\n"
          "# Regenerate with: .venv/bin/python scripts/lock.py (see its docstring).\n")


def frozen() -> list[str]:
    out = subprocess.run([sys.executable, "-m", "pip", "freeze", "--exclude-editable", "--all"],
                         capture_output=True, text=True, check=True).stdout
    lines = []
    for line in out.splitlines():
        if not line or line.startswith(("#", "-e ")) or " @ " in line:
            continue
        name, _, version = line.partition("==")
        if name.lower() in {"pip", "setuptools", "wheel", "es-llm-bench"}:
            continue
        lines.append(f"{name}=={re.sub(r'[+].*$', '', version)}")
    return sorted(lines, key=str.lower)


def main() -> int:
    tmp = LOCK.with_suffix(".tmp")
    tmp.write_text(HEADER + "\n".join(frozen()) + "\n", encoding="utf-8")
    tmp.replace(LOCK)
    print(f"wrote {LOCK} ({len(frozen())} packages)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
