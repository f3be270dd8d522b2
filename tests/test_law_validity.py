"""Is the law task's score valid? Agreement with hand grades, the language gate, and the
multiple-choice baselines: the figures ``python -m benchmark.lawagree`` prints, kept in range."""

from __future__ import annotations

import pytest

from benchmark import lawagree, lawdata


@pytest.fixture(scope="module")
def figures():
    return lawagree.figures()


@pytest.mark.parametrize("name", sorted(lawagree.SETS))
def test_each_graded_set_is_large_and_covers_the_four_kinds(figures, name):
    graded = lawagree.load_graded(lawagree.SETS[name])
    assert figures[name]["answers"] >= 400 and figures[name]["items"] >= 100
    kinds = {k: sum(r["kind"] == k for r in graded) for k in lawagree.KINDS}
    assert min(kinds.values()) >= 100, kinds
    assert figures[name]["grades"]["0"] >= 50 and figures[name]["grades"]["1"] >= 150, figures[name]["grades"]


def test_the_held_out_set_shares_no_item_with_the_dev_set():
    dev = {r["id"] for r in lawagree.load_graded(lawagree.SETS["dev"])}
    held = {r["id"] for r in lawagree.load_graded(lawagree.SETS["heldout"])}
    assert not dev & held


@pytest.mark.parametrize("name", sorted(lawagree.SETS))
def test_the_key_fact_score_agrees_with_the_hand_grades(figures, name):
    """The floors are the figures the datasheet reports (rounded down): a scorer change that loses
    agreement fails here. The targets the scorer is meant to reach are lawagree.TARGETS."""
    a, floor = figures[name], lawagree.FLOORS
    assert a["agreement"] >= floor["agreement"], a
    assert a["kappa"] >= floor["kappa"], a
    assert a["correct_mean"] >= floor["correct_mean"], a
    assert a["wrong_mean"] <= floor["wrong_mean"], a


def test_agreement_figures_can_fail(tmp_path):
    """The same answers with every grade flipped: the statistic falls apart (the test above can fail)."""
    import json

    rows = lawagree.load_graded(lawagree.SETS["heldout"])[:40]
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


def test_guessing_the_same_verdict_everywhere_earns_little(figures):
    """Yes/no items are balanced: "No." or "Sí." to every question stays under 0.10, within 0.02 of each other."""
    blind = figures["blind_answers"]
    assert max(blind.values()) <= 0.10, blind
    assert abs(blind["No."] - blind["Sí."]) <= 0.02, blind
    verdicts = [next(f["valor"] for f in r["hechos_clave"] if f["tipo"] == "veredicto")
                for r in lawdata.load_split("test") if any(f["tipo"] == "veredicto" for f in r["hechos_clave"])]
    assert abs(verdicts.count("si") - verdicts.count("no")) <= 0.1 * len(verdicts), (len(verdicts), verdicts.count("si"))
