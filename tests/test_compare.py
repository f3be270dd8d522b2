"""benchmark/compare.py: adapter vs base with paired bootstrap, on hand-written results folders."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from benchmark import compare as cmp
from tests.test_leaderboard import ANSWERS, make_results, qa_samples, write_combo

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


def test_lower_is_better_metric_turns_the_verdict(tmp_path):
    """An adapter that cites wrong articles where the base cited none is 'worse' on cita_erronea."""
    def with_wrong_citations(samples, value):
        return [{**s, "metrics": s["metrics"] + ["cita_erronea"], "cita_erronea": value} for s in samples]

    write_combo(tmp_path, "smollm2-135m-instruct", "base",
                {"ecuador_law_es_qa_visto": with_wrong_citations(qa_samples(ANSWERS["base"]), 0.0)})
    write_combo(tmp_path, "smollm2-135m-instruct", "law",
                {"ecuador_law_es_qa_visto": with_wrong_citations(qa_samples(ANSWERS["law"]), 1.0)})
    rows = cmp.compare(tmp_path, tasks=["ecuador_law_es_qa_visto"], resamples=200)["smollm2-135m-instruct"]
    wrong = next(r for r in rows if r["metric"] == "cita_erronea")
    assert wrong["delta"] == 1.0 and wrong["verdict"] == "worse"
    recall = next(r for r in rows if r["metric"] == "hechos_recall")
    assert recall["verdict"] == "better"
    assert "| law | ecuador_law_es_qa_visto | cita_erronea | 0.000 | 1.000 |" in cmp.markdown(rows)


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
