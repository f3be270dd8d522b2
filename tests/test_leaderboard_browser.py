"""The built leaderboard page in headless Chromium: sorting, samples, provenance, XSS, no network.

Uses Debian's /usr/bin/chromium through Playwright (nothing downloads a browser).
The page is built from hand-written fake results with XSS payloads in a model
output, an adapter name, a task name and an error text, and opened via file://.
A screenshot goes to leaderboard/screenshot.png (and, when a real
leaderboard/index.html exists, leaderboard/screenshot_real.png).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.sync_api import sync_playwright

from leaderboard import build as lb
from test_leaderboard import XSS_IMG, XSS_SCRIPT, make_results

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]
LAW = f"law{XSS_IMG}"
TASK = "ecuador_law_es_qa_visto"


@pytest.fixture(scope="module")
def browser():
    assert Path(CHROMIUM).exists(), "install Debian's chromium: apt-get install -y chromium"
    with sync_playwright() as p:
        instance = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        yield instance
        instance.close()


def open_page(browser, path: Path):
    """A page on file://path that records dialogs, script errors and any request leaving the file."""
    page = browser.new_page(viewport={"width": 1500, "height": 1000})
    events = {"dialogs": [], "errors": [], "requests": []}
    page.on("dialog", lambda d: (events["dialogs"].append(d.message), d.dismiss()))
    page.on("pageerror", lambda e: events["errors"].append(str(e)))
    page.on("request", lambda r: r.url.startswith("file://") or events["requests"].append(r.url))
    page.goto(path.resolve().as_uri())
    page.wait_for_selector("#board tbody")
    return page, events


def row_labels(page) -> list[str]:
    return page.eval_on_selector_all("#board tbody > tr:first-child", "rows => rows.map(r => "
                                     "r.querySelector('.model').firstChild.textContent + ' / ' + "
                                     "r.querySelector('.adapter').textContent)")


FIXED_COLUMNS = ["model", "adapter", "origin", "precision", "template", "preset", "sample", "batch", "device", "min"]


def header_names(page) -> list[str]:
    """Column names, without the minimum-detectable-effect line under a task's name."""
    return [t.split("\n")[0].split("MDE")[0].strip() for t in page.locator("#head th").all_inner_texts()]


def test_page_in_chromium(browser, tmp_path):
    root = make_results(tmp_path / "results", xss=True)
    page, events = open_page(browser, lb.build(root, tmp_path / "site" / "index.html", resamples=300))

    # table: one row per combination, failed one included, Δ on the adapter row
    assert header_names(page)[:len(FIXED_COLUMNS)] == FIXED_COLUMNS
    before = row_labels(page)
    assert before == ["gemma-3-270m / base", "smollm2-135m-instruct / base", f"smollm2-135m-instruct / {LAW}",
                      "smollm2-135m-instruct / merged"]
    law_row = page.locator("#board tbody").nth(2)
    assert re.search(r"Δ \+\d\.\d{3} \[-?\d\.\d{3}, -?\d\.\d{3}\]", law_row.inner_text())
    assert "FAILED: CUDA out of memory " + XSS_SCRIPT in page.locator("#board tbody").nth(3).inner_text()

    # sorting by a task column (descending first, then ascending) changes the order
    header = page.locator("#head th", has_text=re.compile(f"^{TASK}(MDE|$)"))
    header.click()
    by_score = row_labels(page)
    assert by_score != before and by_score[0] == f"smollm2-135m-instruct / {LAW}" and by_score[-1].endswith("merged")
    values = [float(v) for v in page.eval_on_selector_all(
        "#board tbody td.num:nth-child(%d) .value" % (header_names(page).index(TASK) + 1),
        "cells => cells.map(c => c.textContent)")]
    assert values == sorted(values, reverse=True)
    header.click()
    assert row_labels(page)[:3] == by_score[:3][::-1]
    page.locator("#head th", has_text=re.compile("^model$")).click()
    assert row_labels(page)[0].startswith("gemma")

    # provenance details of a row
    row = page.locator("#board tbody", has_text=LAW)
    assert not row.locator("tr.provenance").is_visible()
    row.locator("button.prov").click()
    provenance = row.locator("tr.provenance").inner_text()
    assert '"template_hash": "' + "ab12" * 16 in provenance and '"lm_eval": "0.4.13"' in provenance

    # sample browser: clicking a score opens that combination's samples; the filter narrows them
    tasks = header_names(page)[len(FIXED_COLUMNS):]
    row.locator("td.num").nth(tasks.index(TASK)).click()
    assert page.locator("#combo option:checked").inner_text() == f"smollm2-135m-instruct / {LAW}"
    assert page.locator("#task").input_value() == TASK
    first = page.locator("#samples .sample").first
    assert first.locator("pre.prompt").inner_text().startswith("<|im_start|>user\n¿Cuántos días de vacaciones")
    assert first.locator("pre.output").inner_text() == f"Quince días. {XSS_SCRIPT} {XSS_IMG}"
    assert page.locator("#samples .sample").count() == 6
    page.fill("#filter", "licencia por paternidad")
    assert page.locator("#samples .sample").count() == 1
    assert page.locator("#count").inner_text() == "1 of 6 samples"
    page.fill("#filter", "")
    page.select_option("#task", XSS_IMG)
    assert "→ [1] agosto" in page.locator("#samples").inner_text()

    # XSS payloads are text: nothing ran, no element was created from them, no request left the file
    assert page.evaluate("window.__xss") is None and page.evaluate("typeof alert") == "function"
    assert events["dialogs"] == [] and events["errors"] == [] and events["requests"] == []
    assert page.locator("img").count() == 0 and page.locator("script").count() == 2
    assert XSS_IMG in page.locator("#head").inner_text()
    assert f"smollm2-135m-instruct / {LAW}" in page.locator("#combo").inner_text()
    assert all(XSS_IMG in t for t in page.locator(".charts").all_inner_texts())

    page.select_option("#task", TASK)
    page.fill("#filter", "vacaciones")
    page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(path=str(REPO / "leaderboard" / "screenshot.png"), full_page=True)
    page.close()

    real = REPO / "leaderboard" / "index.html"
    if real.exists():  # the page last built from real results, when there is one
        page, events = open_page(browser, real)
        assert events["errors"] == [] and events["requests"] == []
        page.screenshot(path=str(REPO / "leaderboard" / "screenshot_real.png"), full_page=True)
        page.close()


def test_comparison_metrics_breakdowns_reproduction_and_reference_in_chromium(browser, tmp_path):
    """Published whole-split rows with a hostile answer, and a sample run compared with them."""
    from benchmark.published import publish
    from test_leaderboard import ANSWERS, FULL, LAW_GROUP, LAW_OUT, _law_tasks, qa_samples, write_combo

    full = tmp_path / "full"
    law_answers = list(ANSWERS["law"])
    law_answers[2] = f"Dos semanas. {XSS_SCRIPT} {XSS_IMG}"
    write_combo(full, "smollm2-135m-instruct", "base",
                _law_tasks(ANSWERS["base"], [0, 0, 2, 0], ["Chévere.", "Es un feriado.", "36"]), LAW_GROUP, bench=FULL)
    write_combo(full, "smollm2-135m-instruct", "law", _law_tasks(law_answers, [0, 1, 2, 0], LAW_OUT), LAW_GROUP,
                bench=FULL)
    store = tmp_path / "published"
    for adapter in ("base", "law"):
        publish(full / "smollm2-135m-instruct" / adapter, store)
    mine = tmp_path / "results"
    changed = list(law_answers)
    changed[0] = "Treinta días."
    write_combo(mine, "smollm2-135m-instruct", "law", {TASK: qa_samples(changed)},
                bench={"sample": "fixed stratified sample, 6 per task", "samples": {TASK: list(range(6))}})
    page, events = open_page(browser, lb.build(mine, tmp_path / "site" / "index.html", resamples=200,
                                               published=store))

    # the published rows are shown, marked so; the sample run is reported against them
    assert row_labels(page) == ["smollm2-135m-instruct / base", "smollm2-135m-instruct / law"]
    assert page.locator("#board td.origin").all_inner_texts() == ["published", "published"]
    repro = page.locator("#reproduction").inner_text()
    assert "5 of 6 documents reproduced exactly" in repro and "document 0" in repro and "answer changed" in repro

    # side by side: base against law on the QA task, then only the documents where they differ
    assert page.locator("#cmp-a option:checked").inner_text() == "smollm2-135m-instruct / base"
    assert page.locator("#cmp-b option:checked").inner_text() == "smollm2-135m-instruct / law"
    page.select_option("#cmp-task", TASK)
    assert page.locator("#compare .sample").count() == 6
    page.check("#cmp-differ")
    differ = sum(a != b for a, b in zip(ANSWERS["base"], law_answers))
    assert page.locator("#compare .sample").count() == differ
    assert page.locator("#cmp-count").inner_text() == f"{differ} of 6 shared documents differ"
    hostile = page.locator("#compare .sample", has_text="Dos semanas.")
    assert hostile.locator("pre.output").nth(1).inner_text() == f"Dos semanas. {XSS_SCRIPT} {XSS_IMG}"

    # every metric of a task, with its direction; a group broken down by its subtasks
    page.select_option("#metrics-task", TASK)
    assert page.locator(".metrics-table th").all_inner_texts() == ["combination", "hechos_recall", "chrf_pp"]
    page.select_option("#breakdown-task", "ecuador_law_es")
    assert "ecuador_law_es_qa_visto" in page.locator("#breakdowns").inner_text()

    # the thesis's figures, apart and marked as reported
    assert page.locator("#reference-head").inner_text().startswith("Reference: reported by the 2023 thesis")
    assert page.locator("#reference tr.reference-row").count() == 6
    assert "54.7" in page.locator("#reference").inner_text()

    # the differences chart has the law row; nothing hostile ran
    assert page.locator(".delta-chart").count() == 4
    assert all("smollm2-135m-instruct / law" in t for t in page.locator(".delta-chart").all_inner_texts())
    assert page.evaluate("window.__xss") is None and page.locator("img").count() == 0
    assert events["dialogs"] == [] and events["errors"] == [] and events["requests"] == []
    page.close()
