"""A rerun of a page must stay cheap: no full garbage collection over TensorFlow's objects and no
clearing of TensorFlow's kernel cache (Streamlit calls `keras.backend.clear_session()` after every
script run while keras is imported). Counted, not timed: the bench measures the milliseconds."""

import gc
import sys
from types import SimpleNamespace

import keras
import pytest
from conftest import ROOT, canvas_with
from streamlit.testing.v1 import AppTest


@pytest.fixture
def counted(monkeypatch):
    """Counts calls of the real clear_session and full (generation 2) collections."""
    counts = {"clear_session": 0, "full_gc": 0}
    real = keras.backend.clear_session

    def clear_session(*args, **kwargs):
        counts["clear_session"] += 1
        return real(*args, **kwargs)

    def on_gc(phase, info):
        if phase == "start" and info["generation"] == 2:
            counts["full_gc"] += 1

    monkeypatch.setattr(keras.backend, "clear_session", clear_session)
    gc.callbacks.append(on_gc)
    yield counts
    gc.callbacks.remove(on_gc)
    gc.unfreeze()


def test_digits_reruns_pay_for_no_full_collection_and_keep_the_kernels(monkeypatch, real_models, counted):
    drawing = SimpleNamespace(image_data=canvas_with("42"))
    monkeypatch.setitem(sys.modules, "streamlit_drawable_canvas", SimpleNamespace(st_canvas=lambda **kw: drawing))
    at = AppTest.from_file(str(ROOT / "views/digits.py"), default_timeout=60).run()  # loads the model
    assert not at.exception and at.metric[0].value == "42"
    assert gc.get_freeze_count() > 100_000  # TensorFlow's and the model's objects are out of the collector's way
    counted.update(clear_session=0, full_gc=0)
    for _ in range(5):  # five strokes
        at.run()
    assert not at.exception and at.metric[0].value == "42"
    assert counted["clear_session"] == 0  # the kernel cache survives a rerun
    assert counted["full_gc"] == 0


def test_the_server_runs_no_full_collection_after_each_script_run():
    # AppTest's runner skips this step, the real server's does not: the setting is what keeps it off.
    from streamlit import config

    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60).run()  # the home page, through the router
    assert not at.exception and config.get_option("runner.postScriptGC") is False
