"""AppTest of the digits page: no model, blank canvas, an injected drawing."""

import sys
from types import SimpleNamespace

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


def test_teach_it_saves_the_drawing(monkeypatch, real_models, isolated_dirs):
    at = run_page(monkeypatch, image=canvas_with("3"))
    at.selectbox(key="label-0").set_value(8)
    at.button(key="save-0").click().run()
    assert not at.exception
    saved = list((isolated_dirs / "feedback_dir" / "digits").glob("*-8.png"))
    assert len(saved) == 1 and "Saved as a 8" in at.success[0].value
    assert "Training page" in at.success[0].value  # says how the drawing is used
    at.button(key="save-0").click().run()  # a double click saves nothing more
    assert len(list((isolated_dirs / "feedback_dir" / "digits").glob("*.png"))) == 1
    assert "already saved" in at.info[0].value
