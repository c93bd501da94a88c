"""A rerun of a page must stay cheap: no full garbage collection over TensorFlow's objects and no
clearing of TensorFlow's kernel cache (Streamlit calls `keras.backend.clear_session()` after every
script run while keras is imported). Counted, not timed: the bench measures the milliseconds."""

import gc
import os
import sys
from types import SimpleNamespace

import keras
import pytest
from conftest import ROOT, canvas_result, canvas_with
from streamlit.testing.v1 import AppTest
from threadpoolctl import threadpool_info

from views import common


@pytest.fixture
def counted(monkeypatch):
    """Calls that reach a real clear_session, and the objects each full (generation 2) collection scans."""
    counts = {"clear_session": 0, "full_gc_scans": []}
    real = keras.backend.clear_session
    if real is not common._no_clear_session:  # not yet replaced by a page of this process

        def clear_session(*args, **kwargs):
            counts["clear_session"] += 1
            return real(*args, **kwargs)

        monkeypatch.setattr(keras.backend, "clear_session", clear_session)

    def on_gc(phase, info):
        if phase == "start" and info["generation"] == 2:  # what this collection will look at (frozen ones not)
            counts["full_gc_scans"].append(sum(len(gc.get_objects(g)) for g in range(3)))

    gc.callbacks.append(on_gc)
    yield counts
    gc.callbacks.remove(on_gc)


def test_digits_reruns_pay_for_no_full_collection_and_keep_the_kernels(monkeypatch, real_models, counted):
    drawing = canvas_result(canvas_with("42"))
    monkeypatch.setitem(sys.modules, "streamlit_drawable_canvas", SimpleNamespace(st_canvas=lambda **kw: drawing))
    at = AppTest.from_file(str(ROOT / "views/digits.py"), default_timeout=60).run()  # loads the model
    assert not at.exception and at.metric[0].value == "42"
    assert keras.backend.clear_session is common._no_clear_session  # what Streamlit calls after each run
    frozen = gc.get_freeze_count()
    assert frozen > 100_000  # TensorFlow's and the model's objects are out of the collector's way
    # NumPy's BLAS on one thread in the server: its spinning threads cost more than the text model's small products
    blas = [lib for lib in threadpool_info() if lib["user_api"] == "blas"]
    assert blas and all(lib["num_threads"] == 1 for lib in blas), blas
    counted.update(clear_session=0, full_gc_scans=[])
    for _ in range(5):  # five strokes
        at.run()
    assert not at.exception and at.metric[0].value == "42"
    assert counted["clear_session"] == 0  # the kernel cache survives a rerun
    # Python may still run a full collection now and then, but it no longer walks the models' objects.
    assert all(scanned < frozen / 2 for scanned in counted["full_gc_scans"]), (counted["full_gc_scans"], frozen)


def test_the_server_runs_no_full_collection_after_each_script_run():
    # AppTest's runner skips this step, the real server's does not: the setting is what keeps it off.
    from streamlit import config

    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60).run()  # the home page, through the router
    assert not at.exception and config.get_option("runner.postScriptGC") is False


def test_a_page_that_imports_keras_without_a_model_keeps_reruns_cheap(tmp_path):
    """The Training page imports Keras but loads no model: the router makes its reruns cheap all the same.
    In a fresh process, since another test here may already have loaded a model."""
    import subprocess

    script = f"""
import gc, sys
sys.path.insert(0, {str(ROOT)!r})
from streamlit.testing.v1 import AppTest
at = AppTest.from_file({str(ROOT / "app.py")!r}, default_timeout=120).run()
at.switch_page("views/training.py").run()
assert not at.exception, at.exception
import keras
from views import common
assert "keras" in sys.modules
print(keras.backend.clear_session is common._no_clear_session, gc.get_freeze_count())
"""
    env = {**os.environ, "RUNS_DIR": str(tmp_path / "runs")}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    patched, frozen = out.stdout.split()[-2:]
    assert patched == "True" and int(frozen) > 100_000
