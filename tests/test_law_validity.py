"""Is the law task's score valid? Agreement with hand grades, the language gate, and the
multiple-choice baselines: the figures ``python -m benchmark.lawagree`` prints, kept in range."""

from __future__ import annotations

import pytest

from benchmark import lawagree, lawdata


@pytest.fixture(scope="module")
def figures():
    return lawagree.figures()


def test_the_graded_set_is_large_and_covers_the_four_kinds(figures):
    graded = lawagree.load_graded()
    assert figures["all"]["answers"] >= 400 and figures["all"]["items"] >= 100
    kinds = {k: sum(r["kind"] == k for r in graded) for k in lawagree.KINDS}
    assert min(kinds.values()) >= 100, kinds
    assert figures["all"]["grades"]["0"] >= 50 and figures["all"]["grades"]["1"] >= 150, figures["all"]["grades"]


@pytest.mark.parametrize("part", ["all", "B (untouched)"])
def test_the_key_fact_score_agrees_with_the_hand_grades(figures, part):
    a, t = figures[part], lawagree.TARGETS
    assert a["agreement"] >= t["agreement"], a
    assert a["kappa"] >= t["kappa"], a
    assert a["correct_mean"] >= t["correct_mean"], a
    assert a["wrong_mean"] <= t["wrong_mean"], a


def test_agreement_figures_can_fail(tmp_path):
    """The same answers with every grade flipped: the statistic falls apart (the test above can fail)."""
    import json

    rows = lawagree.load_graded()[:40]
    path = tmp_path / "flipped.jsonl"
    path.write_text("".join(json.dumps({**{k: v for k, v in r.items() if k != "_where"},
                                        "grade": 1 - r["grade"]}, ensure_ascii=False) + "\n" for r in rows))
    flipped = lawagree.agreement(lawagree.score_graded(lawagree.load_graded(path)))
    assert flipped["agreement"] < 0.5 and flipped["kappa"] < 0


def test_no_short_spanish_answer_is_zeroed_and_foreign_ones_are(figures):
    gate = figures["language_gate"]
    assert gate["correct_options"] == len(lawdata.load_split("test"))
    assert gate["correct_options_zeroed"] == 0, gate["zeroed_ids"]
    assert gate["foreign_answers_not_zeroed"] == 0


@pytest.mark.parametrize("split", ["test", "validation"])
def test_multiple_choice_cannot_be_answered_from_the_options_alone(figures, split):
    lo, hi = lawdata.MC_BASELINE_RANGE
    baselines = figures["mc_baselines"][split]
    for heuristic in ("shortest", "longest", "odd_one_out", "question_overlap"):
        assert lo <= baselines[heuristic] <= hi, (heuristic, baselines)


def test_mc_baselines_catch_a_giveaway():
    rows = [{"pregunta": "¿Cuántos días?", "correcta": i % 4,
             "opciones": ["Treinta" if j == i % 4 else f"Una opción mucho más larga número {j}" for j in range(4)]}
            for i in range(8)]
    assert lawdata.mc_baselines(rows)["shortest"] == 1.0
