"""AppTest of the digits page: no model, blank canvas, an injected drawing."""

import sys
from types import SimpleNamespace

import numpy as np
import pytest
from conftest import ROOT, canvas_result, canvas_with
from streamlit.testing.v1 import AppTest

PAGE = str(ROOT / "views/digits.py")


def run_page(monkeypatch, image=None):
    # The canvas is a browser component AppTest cannot draw on: stand in a fake that
    # returns the given image (the browser test uses the real one).
    fake = SimpleNamespace(st_canvas=lambda **kw: canvas_result(image))
    monkeypatch.setitem(sys.modules, "streamlit_drawable_canvas", fake)
    at = AppTest.from_file(PAGE, default_timeout=60)
    return at.run()


def test_no_model_gives_a_clear_message(monkeypatch):
    at = run_page(monkeypatch)
    assert not at.exception
    assert "No trained model" in at.info[0].value


def test_corrupt_model_gives_a_clear_message(monkeypatch, isolated_dirs):
    from pipelines import core

    core.models_dir().mkdir(parents=True)
    core.model_path("digits").write_bytes(b"garbage")
    at = run_page(monkeypatch)
    assert not at.exception and "could not be read" in at.info[0].value


def test_blank_canvas_asks_to_draw(monkeypatch, real_models):
    at = run_page(monkeypatch, image=None)
    assert not at.exception
    assert "Draw a digit" in at.info[0].value


@pytest.mark.parametrize("number", ["7", "42"])
def test_injected_drawing_is_read(monkeypatch, real_models, number):
    at = run_page(monkeypatch, image=canvas_with(number))
    assert not at.exception
    assert at.metric[0].value == number


def test_a_mark_that_is_not_a_digit_reads_as_a_question_mark_without_not_sure(monkeypatch, real_models):
    block = np.zeros((280, 560, 4), np.uint8)
    block[70:210, 220:340, 3] = 255  # a filled block
    at = run_page(monkeypatch, image=block)
    assert not at.exception and at.metric[0].value == "?"
    assert at.metric[0].proto.delta == "" and "does not look like a digit" in at.warning[0].value


def test_teach_it_opens_a_dialog_on_the_reading(monkeypatch, real_models):
    # Saving from the dialog reruns the dialog alone, which AppTest does not do: the real browser test
    # (test_browser.py) saves, and test_digits.py covers save_feedback.
    at = run_page(monkeypatch, image=canvas_with("3"))
    assert not at.get("selectbox")  # nothing of the dialog on the page until it is opened
    at.button(key="teach-0").click().run()
    assert not at.exception
    assert at.selectbox(key="teach-label").value == 3  # starts at the model's reading
    assert at.button(key="teach-save").label == "Save this drawing"


def test_a_new_pen_width_makes_the_canvas_start_from_the_drawing(monkeypatch, real_models):
    """If the browser builds the canvas again after a change of its settings, it loads `initial_drawing`:
    that must be the person's drawing, not the empty one of the last Clear (tests/test_browser.py walks it)."""
    import base64

    import cv2
    import streamlit as st

    png = cv2.imencode(".png", cv2.cvtColor(canvas_with("4"), cv2.COLOR_RGBA2BGRA))[1].tobytes()
    drawing = {"raw": {"objects": [{"type": "path", "path": [["M", 1, 2]]}]},
               "data": "data:image/png;base64," + base64.b64encode(png).decode()}
    given, drawn = [], []

    def fake_canvas(**kw):
        given.append(kw["initial_drawing"])
        st.session_state["canvas"] = {"drawing": drawing if drawn else {}}  # what the canvas reports
        return canvas_result(canvas_with("4") if drawn else None)

    monkeypatch.setitem(sys.modules, "streamlit_drawable_canvas", SimpleNamespace(st_canvas=fake_canvas))
    at = AppTest.from_file(PAGE, default_timeout=60).run()
    at.button[[b.label for b in at.button].index("Clear")].click().run()
    assert given[-1]["objects"] == [] and at.metric == []  # cleared
    drawn.append(True)
    at.run()  # the person draws a 4
    assert at.metric[0].value == "4"
    at.slider[0].set_value(30).run()  # the pen's slider
    assert not at.exception and given[-1] == drawing["raw"] and at.metric[0].value == "4"
