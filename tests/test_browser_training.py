"""The Training page's promotion gate and rollback in a real browser (Debian Chromium via Playwright)."""

import numpy as np
import pytest
from browser import DESKTOP, chromium, streamlit_server
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

        page.get_by_role("button", name="Roll back to v1").click()
        expect(page.get_by_text("v1 is the active model again")).to_be_visible(timeout=30_000)
        assert core.active_version("digits") == "v1"
        expect(page.get_by_role("button", name="Roll back to v2")).to_be_visible()

        # A phone: the page must not scroll sideways.
        page.set_viewport_size({"width": 390, "height": 844})
        page.wait_for_timeout(1500)
        assert tab.sideways_scroll() <= 0
        tab.shot("training-rollback-phone")
        assert tab.problems == []
