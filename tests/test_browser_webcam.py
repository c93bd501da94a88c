"""The Mood page's webcam path in a real browser: Chromium's fake camera shows a face photo.
Its own module: the camera needs a browser started with the fake video."""

import pytest
from browser import DESKTOP, chromium, songs_table, streamlit_server, write_y4m
from conftest import face_photo
from playwright.sync_api import expect
from test_browser import server_env

pytestmark = pytest.mark.browser


def test_webcam_snapshot_of_a_face_gets_a_mood_and_songs(tmp_path):
    video = write_y4m(face_photo(), tmp_path / "face.y4m")
    with streamlit_server(server_env(tmp_path)) as url, chromium(video) as open_tab:
        tab = open_tab(DESKTOP)
        page = tab.page
        page.goto(f"{url}/mood")
        camera = page.get_by_test_id("stCameraInput")
        camera.wait_for(timeout=60_000)
        page.wait_for_function("""() => { const v = document.querySelector('[data-testid=stCameraInput] video');
                                          return v && v.readyState >= 2 && v.videoWidth > 0; }""", timeout=60_000)
        camera.get_by_role("button", name="Take photo").click()
        expect(page.get_by_text("1 face(s) found")).to_be_visible(timeout=60_000)
        expect(page.get_by_text("Songs for this mood")).to_be_visible()
        expect(songs_table(page)).to_be_visible()
        tab.shot("mood-webcam-desktop")
