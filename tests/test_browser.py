"""End-to-end tests in a real browser (Debian Chromium driven by Playwright)."""

import re

import numpy as np
import pytest
from browser import chromium, streamlit_server, write_y4m
from conftest import REAL_MODELS, face_photo, synthetic_mnist
from playwright.sync_api import expect

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def app_url(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("e2e")
    x, y = synthetic_mnist(20)
    np.savez_compressed(tmp / "mnist.npz", x_train=x, y_train=y, x_test=x[:40], y_test=y[:40])
    env = {"MODELS_DIR": str(REAL_MODELS), "RUNS_DIR": str(tmp / "runs"), "FEEDBACK_DIR": str(tmp / "feedback"),
           "DATA_DIR": str(tmp)}
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
        expect(page.get_by_test_id("stMetricValue")).to_have_text("1", timeout=60_000)
        expect(page.get_by_text("what the model sees")).to_be_visible()


def test_type_a_prompt_and_click_a_suggestion(app_url):
    with chromium() as page:
        page.goto(f"{app_url}/text")
        box = page.get_by_label("Your text")
        box.wait_for(timeout=60_000)
        box.fill("the free spi")
        box.press("Control+Enter")
        expect(page.get_by_text("Complete “spi”")).to_be_visible(timeout=60_000)
        # The chips of the previous run can linger for a moment: wait for a completion of "spi".
        chip = page.get_by_role("button", name=re.compile(r"^spi[a-z']*\s+·")).first
        chip.wait_for(timeout=60_000)
        word = chip.inner_text().split("·")[0].strip()
        chip.click()
        expect(box).to_have_value(f"the free {word} ", timeout=30_000)


def test_webcam_snapshot_of_a_face_gets_a_mood_and_songs(tmp_path):
    video = write_y4m(face_photo(), tmp_path / "face.y4m")
    env = {"MODELS_DIR": str(REAL_MODELS), "RUNS_DIR": str(tmp_path / "runs")}
    with streamlit_server(env) as url, chromium(video) as page:
        page.goto(f"{url}/mood")
        camera = page.get_by_test_id("stCameraInput")
        camera.wait_for(timeout=60_000)
        page.wait_for_function("""() => { const v = document.querySelector('[data-testid=stCameraInput] video');
                                          return v && v.readyState >= 2 && v.videoWidth > 0; }""", timeout=60_000)
        camera.get_by_role("button", name="Take photo").click()
        expect(page.get_by_text("1 face(s) found")).to_be_visible(timeout=60_000)
        expect(page.get_by_text("Songs for this mood")).to_be_visible()
        expect(page.get_by_test_id("stDataFrame")).to_be_visible()


def test_click_train_and_watch_the_chart_move(app_url):
    with chromium() as page:
        page.goto(f"{app_url}/training")
        page.get_by_text("New run").wait_for(timeout=60_000)
        epochs = page.get_by_label("Epochs")
        epochs.fill("2")
        page.get_by_role("button", name="Train").click()
        expect(page.get_by_text("Started run")).to_be_visible(timeout=30_000)
        chart = page.locator("[data-testid=stPlotlyChart]").first
        chart.wait_for(timeout=120_000)
        progress = page.get_by_test_id("stProgress")
        first = progress.inner_text()
        expect(page.get_by_text("finished", exact=False).first).to_be_visible(timeout=180_000)
        expect(progress).not_to_have_text(first, timeout=10_000)
        expect(page.get_by_text("test accuracy")).to_be_visible(timeout=30_000)
