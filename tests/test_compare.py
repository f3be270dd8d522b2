"""benchmark/compare.py: adapter vs base with paired bootstrap, on hand-written results folders."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from benchmark import compare as cmp
from tests.test_leaderboard import make_results

REPO = Path(__file__).resolve().parents[1]


def test_law_adapter_beats_base_and_interval_brackets_the_difference(tmp_path):
    make_results(tmp_path)
    rows = cmp.compare(tmp_path, tasks=["ecuador_law_es_qa_visto", "instruct_es_gen"], resamples=200)
    smol = {(r["task"], r["metric"]): r for r in rows["smollm2-135m-instruct"]}
    recall = smol[("ecuador_law_es_qa_visto", "hechos_recall")]
    assert recall["adapter_score"] > recall["base"]
    assert recall["delta"] == recall["adapter_score"] - recall["base"]
    assert recall["lo"] <= recall["delta"] <= recall["hi"]
    assert recall["lo"] > 0 and recall["verdict"] == "better"
    chrf = smol[("instruct_es_gen", "chrf_pp")]
    assert chrf["adapter_score"] > chrf["base"] and chrf["n"] == 3
    # gemma has no adapter in the fake results: nothing to compare
    assert "gemma-3-270m" not in rows


def test_lower_is_better_metric_turns_the_verdict():
    row = dict(adapter="law", task="t", metric="cita_erronea", base=0.1, adapter_score=0.3, sample="s", precision="8bit")
    assert cmp.markdown([{**row, "delta": 0.2, "lo": 0.1, "hi": 0.3, "n": 10, "verdict": "worse"}]).count("worse") == 1


def test_card_section_is_replaced_not_duplicated(tmp_path):
    card = tmp_path / "README.md"
    card.write_text("# card\n\n## Training\n\nsteps 3\n", encoding="utf-8")
    cmp.write_card(card, "first table\n")
    cmp.write_card(card, "second table\n")
    text = card.read_text(encoding="utf-8")
    assert text.count("## Evaluation") == 1 and "second table" in text and "first table" not in text
    assert text.startswith("# card") and "steps 3" in text


def test_cli_says_what_to_run_when_nothing_compares(tmp_path):
    (tmp_path / "empty").mkdir()
    proc = subprocess.run([sys.executable, "-m", "benchmark.compare", "--results", str(tmp_path / "empty")],
                          cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 2 and "run_all.py" in proc.stderr
