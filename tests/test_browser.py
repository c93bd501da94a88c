"""End-to-end tests in a real browser (Debian Chromium driven by Playwright)."""

import pytest
from browser import chromium, streamlit_server
from conftest import REAL_MODELS
from playwright.sync_api import expect

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def app_url(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("e2e")
    env = {"MODELS_DIR": str(REAL_MODELS), "RUNS_DIR": str(tmp / "runs"), "FEEDBACK_DIR": str(tmp / "feedback")}
    with streamlit_server(env) as url:
        yield url


def test_draw_a_one_with_the_mouse(app_url):
    with chromium() as page:
        page.goto(f"{app_url}/digits")
        canvas = page.locator("canvas.upper-canvas")
        canvas.wait_for(timeout=60_000)
        box = canvas.bounding_box()
        x = box["x"] + 140
        page.mouse.move(x, box["y"] + 40)
        page.mouse.down()
        for i in range(1, 21):
            page.mouse.move(x + i * 0.5, box["y"] + 40 + i * 10)
        page.mouse.up()
        metric = page.get_by_test_id("stMetricValue")
        expect(metric).to_have_text("1", timeout=60_000)
        expect(page.get_by_text("what the model sees")).to_be_visible()
