"""Copy the law corpus into ``tasks/ecuador_law_es/corpus/`` and clean publisher residue.

The task's data checks (grounding, verbatim copies) read the articles from that
folder, so the repository needs nothing beside it. Only the per-article
``.jsonl`` files and ``SOURCE.md`` are copied. Cleaning removes what commercial
editions print between articles and that is not law text: page footers
("LEY ORGÁNICA ... - Página 12"), "Concordancias:" cross-reference blocks, and
the heading lines of the *next* division (LIBRO, TÍTULO, CAPÍTULO, SECCIÓN)
that the article splitter left at the end of an article.

    python scripts/vendor_corpus.py SOURCE_DIR            # writes tasks/ecuador_law_es/corpus/
    python scripts/vendor_corpus.py SOURCE_DIR --check    # exit 1 if the vendored copy differs
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEST = REPO / "tasks" / "ecuador_law_es" / "corpus"
FOOTER = re.compile(r"^[A-ZÁÉÍÓÚÑ ,.()-]{12,} - P[áa]gina \d+\s*$")
CROSS_REF = re.compile(r"^[A-ZÁÉÍÓÚÑ0-9 ,.()'-]{6,}, Arts?\.\s*[\d, .A-Za-z-]*$")
HEADING = re.compile(r"^(LIBRO|T[ÍI]TULO|CAP[ÍI]TULO|SECCI[ÓO]N|PAR[ÁA]GRAFO)\b[A-ZÁÉÍÓÚÑ0-9 ,.()-]*$")
ALL_CAPS = re.compile(r"^[A-ZÁÉÍÓÚÑ0-9 ,.;:()'-]+$")


def clean_text(text: str) -> str:
    lines = [ln for ln in text.split("\n") if not FOOTER.match(ln.strip())]
    out, in_refs = [], False
    for ln in lines:
        s = ln.strip()
        if s == "Concordancias:":
            in_refs = True
            continue
        if in_refs and (CROSS_REF.match(s) or not s):
            continue
        in_refs = False
        out.append(ln)
    # Trailing division headings (and their all-caps continuation lines) belong to the next article.
    while out:
        tail = [i for i, ln in enumerate(out) if HEADING.match(ln.strip())]
        if not tail:
            break
        start = tail[-1]
        if all(ALL_CAPS.match(ln.strip()) for ln in out[start:] if ln.strip()):
            out = out[:start]
        else:
            break
    return "\n".join(out).strip()


def vendored(source: Path) -> dict[str, str]:
    files = {}
    for path in sorted(source.glob("*.jsonl")):
        rows = []
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                row = json.loads(line)
                row["texto"] = clean_text(row["texto"])
                rows.append(json.dumps(row, ensure_ascii=False))
        files[path.name] = "\n".join(rows) + "\n"
    files["SOURCE.md"] = (source / "SOURCE.md").read_text(encoding="utf-8")
    return files


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", type=Path, help="folder with the corpus .jsonl files and SOURCE.md")
    parser.add_argument("--check", action="store_true", help="compare with the vendored copy, write nothing")
    args = parser.parse_args(argv)
    if not (args.source / "SOURCE.md").is_file():
        parser.error(f"{args.source}: no SOURCE.md there; pass the corpus folder")
    files = vendored(args.source)
    if args.check:
        stale = [n for n, t in files.items() if not (DEST / n).is_file() or (DEST / n).read_text(encoding="utf-8") != t]
        print("up to date" if not stale else f"differs: {', '.join(stale)}")
        return 1 if stale else 0
    DEST.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        tmp = DEST / f".{name}.tmp"
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(DEST / name)
    print(f"wrote {len(files)} files to {DEST}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
