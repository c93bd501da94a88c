"""The Training page's promotion gate and rollback in a real browser (Debian Chromium via Playwright)."""

import numpy as np
import pytest
from browser import DESKTOP, chromium, open_expander, streamlit_server, wait_for_app
from playwright.sync_api import expect
from test_core import finished_run

from pipelines import core

pytestmark = pytest.mark.browser


def evaluated_run(accuracy: float):
    run = finished_run("digits", score=accuracy)
    cm = np.eye(10, dtype=int).tolist()
    core.write_json(run.dir / "card.json", run.card() | {"test": {
        "accuracy": accuracy, "macro_f1": accuracy, "confusion_matrix": cm, "labels": list("0123456789"),
        "per_class": {str(i): {"precision": 1, "recall": 1, "f1": 1} for i in range(10)}}})
    return run


def test_promote_a_worse_run_see_both_numbers_cancel_then_roll_back(isolated_dirs):
    core.promote("digits", evaluated_run(0.95).dir)  # v1
    core.promote("digits", evaluated_run(0.9).dir)  # v2, active
    worse = evaluated_run(0.5)
    env = {"MODELS_DIR": str(core.models_dir()), "RUNS_DIR": str(core.runs_dir())}
    with streamlit_server(env) as url, chromium() as open_tab:
        tab = open_tab(DESKTOP)
        page = tab.page
        page.goto(f"{url}/training")
        expect(page.get_by_text(f"Run {worse.id}: finished")).to_be_visible(timeout=60_000)
        expect(page.get_by_text("50.00% vs active v2 90.00%")).to_be_visible()
        page.get_by_role("button", name="Promote this model").click()
        warning = page.get_by_text("Promote anyway?")
        expect(warning).to_be_visible(timeout=30_000)
        expect(warning).to_contain_text("worse by 40.00 points")
        expect(warning).to_contain_text("90.00%")
        page.get_by_role("button", name="Cancel").click()
        expect(warning).to_be_hidden(timeout=30_000)
        assert core.active_version("digits") == "v2"

        # Two clicks 150 ms apart, as a double tap: the second one landed on the button that had moved into the
        # first one's place ("Roll back to v2") and undid the rollback.
        button = page.get_by_role("button", name="Make v1 active")
        button.scroll_into_view_if_needed()
        wait_for_app(page)
        page.wait_for_timeout(1000)  # the warning above has gone: the button is where it stays
        at = button.bounding_box()
        page.mouse.click(at["x"] + at["width"] / 2, at["y"] + at["height"] / 2)
        page.wait_for_timeout(150)
        page.mouse.click(at["x"] + at["width"] / 2, at["y"] + at["height"] / 2)
        page.wait_for_timeout(1000)
        wait_for_app(page)
        page.wait_for_timeout(1000)
        tab.shot("training-rollback-double-tap")
        assert core.active_version("digits") == "v1"
        expect(page.get_by_role("button", name="v1 is active")).to_be_disabled()
        expect(page.get_by_role("button", name="Make v2 active")).to_be_visible()

        # A phone: the page must not scroll sideways.
        page.set_viewport_size({"width": 390, "height": 844})
        page.wait_for_timeout(1500)
        assert tab.sideways_scroll() <= 0
        tab.shot("training-rollback-phone")
        assert tab.problems == []


def pick_runs(page, *run_ids):
    """Choose runs in the 'Open or compare runs' multiselect (typing filters the options)."""
    box = page.get_by_test_id("stMultiSelect").filter(has_text="Open or compare runs")
    for run_id in run_ids:
        box.locator("input").click()
        box.locator("input").fill(run_id)
        page.keyboard.press("Enter")
    page.keyboard.press("Escape")


def plot_traces(page) -> list[list[str]]:
    """The validation traces' names of every plotly chart on the page."""
    return page.evaluate("""() => [...document.querySelectorAll('.js-plotly-plot')]
        .map(el => (el.data || []).filter(t => t.meta === 'val').map(t => t.name))""")


def shot_of(tab, name: str, anchor, width: int) -> None:
    """The whole page at `width` (tab.shot makes the window as tall as the page), once `anchor` is there."""
    tab.page.set_viewport_size({"width": width, "height": DESKTOP["height"]})
    anchor.wait_for(timeout=30_000)
    tab.page.wait_for_timeout(1200)
    assert tab.sideways_scroll() <= 0
    tab.shot(name)
    tab.page.set_viewport_size(DESKTOP)


def test_every_details_tab_can_be_tapped_on_a_phone(isolated_dirs):
    """On a touch screen the settings table's toolbar is always shown; right under the tab strip it covered
    "Data", which a tap could not reach."""
    from browser import PHONE

    evaluated_run(0.9)
    env = {"MODELS_DIR": str(core.models_dir()), "RUNS_DIR": str(core.runs_dir())}
    with streamlit_server(env) as url, chromium() as open_tab:
        tab = open_tab(PHONE)
        page = tab.page
        page.goto(f"{url}/training")
        settings = page.get_by_role("tab", name="Settings and card")
        settings.wait_for(timeout=60_000)
        wait_for_app(page)
        for name in ("Settings and card", "Data", "Mistakes", "Evaluation"):
            page.get_by_role("tab", name=name).tap()
            expect(page.get_by_role("tab", name=name)).to_have_attribute("aria-selected", "true", timeout=10_000)
            wait_for_app(page)
        assert tab.problems == []


def test_a_reload_keeps_the_task_and_a_link_names_it(isolated_dirs):
    env = {"MODELS_DIR": str(core.models_dir()), "RUNS_DIR": str(core.runs_dir())}
    with streamlit_server(env) as url, chromium() as open_tab:
        tab = open_tab(DESKTOP)
        page = tab.page
        page.goto(f"{url}/training?task=mood")  # a shared link, as the first request
        picked = page.get_by_test_id("stButtonGroup").first.get_by_role("radio", name="mood", exact=True)
        expect(picked).to_be_checked(timeout=60_000)
        page.get_by_test_id("stButtonGroup").first.get_by_role("radio", name="text", exact=True).click()
        page.wait_for_url("**/training?task=text", timeout=30_000)
        expect(page.get_by_text("No text runs yet")).to_be_visible(timeout=30_000)
        # Settled, the text form's corpus uploader drawn: a reload while its script loads aborts that request.
        page.get_by_test_id("stFileUploaderDropzone").wait_for(timeout=30_000)
        wait_for_app(page)
        page.wait_for_load_state("networkidle")
        page.reload()  # it went back to digits
        text = page.get_by_test_id("stButtonGroup").first.get_by_role("radio", name="text", exact=True)
        expect(text).to_be_checked(timeout=60_000)
        expect(page.get_by_text("No text runs yet")).to_be_visible()
        text.click()  # the task shown, tapped again: it stays picked (no task was highlighted)
        wait_for_app(page)
        expect(text).to_be_checked()
        # Another page and back: the task stays, and the link of the other page does not carry it ("/digits?task=").
        nav = page.get_by_test_id("stSidebarNav")
        nav.get_by_role("link", name="Digits").click()
        page.wait_for_url("**/digits", timeout=30_000)
        nav.get_by_role("link", name="Training").click()
        expect(text).to_be_checked(timeout=60_000)
        page.wait_for_url("**/training?task=text", timeout=30_000)
        assert tab.problems == []


def test_tracker_details_compare_delete_with_200_runs(isolated_dirs):
    from test_tracker import synthetic_run

    made = [synthetic_run(score=0.5 + i / 1000, lr=(1e-3, 2e-3, 5e-4)[i % 3], batch_size=(128, 64)[i % 2],
                          mistakes=i >= 195, seed=i) for i in range(200)]
    core.promote("digits", made[-1].dir)  # the newest run is the active model's source
    old, a, b = made[-5], made[-4], made[-3]  # a, b, old: lr 2e-3/5e-4/1e-3, batch 64/128/64
    env = {"MODELS_DIR": str(core.models_dir()), "RUNS_DIR": str(core.runs_dir())}
    with streamlit_server(env) as url, chromium() as open_tab:
        tab = open_tab(DESKTOP)
        page = tab.page
        page.goto(f"{url}/training")
        expect(page.get_by_text("200 runs;")).to_be_visible(timeout=60_000)

        # an old run's details, its mistakes grid
        box = page.get_by_test_id("stMultiSelect").filter(has_text="Open or compare runs")
        box.locator("input").click()
        page.keyboard.press("Backspace")  # drop the default choice (the newest run)
        pick_runs(page, old.id)  # details show the run picked last
        expect(page.get_by_text(f"{old.id} · finished")).to_be_visible(timeout=30_000)
        page.get_by_role("tab", name="Mistakes").click()
        expect(page.get_by_text("the most confident mistakes first")).to_be_visible(timeout=30_000)
        mistakes = core.read_json(old.dir / "mistakes.json")["items"]
        assert mistakes and all(m["true"] != m["predicted"] for m in mistakes)
        expect(page.locator("img[src*='media']").first).to_be_visible()
        shot_of(tab, "training-mistakes-desktop", page.get_by_text("the most confident mistakes first"), 1280)
        page.get_by_role("tab", name="Mistakes").click()
        page.get_by_role("tab", name="Evaluation").click()
        header = page.get_by_role("heading", name="Run details")
        shot_of(tab, "training-details-desktop", header, 1280)
        shot_of(tab, "training-details-phone", header, 390)

        # compare three
        pick_runs(page, a.id, b.id)
        expect(page.get_by_text("Compare 3 runs")).to_be_visible(timeout=30_000)
        page.wait_for_timeout(1500)
        val = [t for t in plot_traces(page) if t]
        assert len(val) == 2 and sorted(val[0]) == sorted(r.id for r in (old, a, b))
        expect(page.get_by_text("Settings that differ")).to_be_visible()
        heading = page.get_by_role("heading", name="Compare 3 runs")
        shot_of(tab, "training-compare-desktop", heading, 1280)
        shot_of(tab, "training-compare-phone", heading, 390)

        # delete: asks first, then the run is gone; the active model's source is refused
        a = b  # the run picked last, whose details are open
        wait_for_app(page)  # the page as a person sees it once it has settled, after the resizes above
        open_expander(page, "Manage this run")
        page.get_by_role("button", name="Delete this run").click()
        confirm = page.get_by_text("and all its files for good?")
        expect(confirm).to_be_visible(timeout=60_000)
        tab.shot("training-delete-confirm")
        page.get_by_role("button", name="Yes, delete it").click()
        expect(page.get_by_text(f"Deleted run {a.id}")).to_be_visible(timeout=30_000)
        assert not a.dir.exists()
        expect(page.get_by_text("199 runs;")).to_be_visible(timeout=30_000)
        assert tab.problems == []
