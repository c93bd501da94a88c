"""Helpers shared by the pages: cached read-only models, the no-model path, cheap reruns, page changes."""

from __future__ import annotations

import gc
import sys

import streamlit as st

from pipelines import core


def _keep_kernels() -> None:
    """After every script run Streamlit calls `keras.backend.clear_session()` when keras is imported
    (a full garbage collection plus TensorFlow's kernel cache, rebuilt by the next model call).
    This server only runs inference on models it never changes, and training runs in its own
    processes, so in the server that call has nothing to clear: make it a no-op here."""
    import keras

    keras.backend.clear_session = _no_clear_session


def _no_clear_session(*args, **kwargs) -> None:
    return None


def _one_blas_thread() -> None:
    """NumPy's BLAS (OpenBLAS) would spread each small matrix product of the text model's steps over every core,
    and its threads spin a while after each call, waiting for more: in a server, where products come a click at a
    time, the spinning cost more CPU than the products (a suggestion update 94 ms of server CPU a message with
    BLAS on both cores, 41 with TensorFlow's steps; measured in Chromium on a real server). One thread here."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(1, user_api="blas")


def _settle() -> None:
    """Streamlit's clear_session after each rerun becomes a no-op, and what TensorFlow and the models keep alive for
    good (~430k objects) leaves the collector's reach, so the collections Python runs do not scan it on every click."""
    _keep_kernels()
    _one_blas_thread()
    gc.collect()
    gc.freeze()


def keep_reruns_cheap() -> None:
    """Called by the router after each full run: once a page has imported Keras (the Training page does, with no
    model to load), `_settle` as `_load` does for a model. Without it an open Training tab on a server where no
    model was loaded yet cost 250 ms of server CPU per polling tick."""
    if "keras" in sys.modules and sys.modules["keras"].backend.clear_session is not _no_clear_session:
        _settle()


@st.cache_resource(show_spinner="Loading the model...", max_entries=8)
def _load(_loader, name: str, path: str, version: float):
    # Keyed on the file and its mtime: a promoted model gets a fresh entry, no restart needed.
    model = _loader(name)
    _settle()  # again for each model: its objects are new
    return model


def require_model(name: str, loader):
    """What `loader(name)` returns for the active model `name`, or a clear message and stop."""
    try:
        return _load(loader, name, str(core.model_path(name)), core.model_version(name))
    except core.ModelUnavailable as exc:
        st.info(str(exc))
        st.stop()


def upload_limit_mb() -> int:
    """The one upload limit, from .streamlit/config.toml (server.maxUploadSize)."""
    return int(st.get_option("server.maxUploadSize"))


PAGE_KEY = "_page"  # the url path of the page of the session's latest full run


def leave_other_pages(page) -> None:
    """Called by the router at the start of each full run. When the person has just changed pages,
    forget the fragments of the page they left.

    A fragment rerun asked for just as the person clicks another page (the last keys reported on
    blur, a stroke reported after the canvas's 200 ms wait, a polling tick) reaches the server
    after the new page's run has started. Streamlit (1.67) forgets the old page's fragments only
    when that run ends, so it runs the old fragment, which writes its container at its old
    position into the new page: the browser shows a blank app ("Bad delta path index").
    Forgotten now, the late request is dropped on arrival ("fragment does not exist anymore").
    What it carried was for a page that is gone (Streamlit drops a widget's state when its page
    is left); the pages keep the person's work themselves (the text box in the browser too).
    Private API, with the version pinned: tests/test_browser.py changes pages right after typing
    and drawing, and fails if this stops working."""
    previous = st.session_state.get(PAGE_KEY)
    st.session_state[PAGE_KEY] = page.url_path
    if previous is not None and previous != page.url_path:
        from streamlit.runtime.scriptrunner import get_script_run_ctx

        ctx = get_script_run_ctx()
        if ctx is not None:
            ctx.fragment_storage.clear()


def keep_clicked_page() -> None:
    """Make a click on another page win over a fragment rerun that arrives just after it.

    Streamlit (1.67) folds rerun requests that arrive before the next run starts into one, and the
    folded request takes the page of the newer one. A fragment rerun sent as the person clicks a
    page in the navigation (the last keys reported on blur, a stroke reported after the canvas's
    200 ms wait, a Training tick) carries the page being left, so the click was lost: the app
    stayed on the old page (about 1 action in 300 with 20 visitors in bench.load). A fragment
    rerun never means to change pages, so here the page of the pending full rerun is kept.
    Private API, with the version pinned: tests/test_page_changes.py fails if the folding changes."""
    from dataclasses import replace

    from streamlit.runtime.scriptrunner_utils import script_requests as sr

    if getattr(sr.ScriptRequests, "_keeps_clicked_page", False):
        return
    fold = sr.ScriptRequests._request_rerun_locked

    def request_rerun_locked(self, new_data):
        pending = self._rerun_data if self._state == sr.ScriptRequestType.RERUN else None
        if pending is not None and sr._is_full_app_rerun(pending) and not sr._is_full_app_rerun(new_data):
            new_data = replace(new_data, page_script_hash=pending.page_script_hash, page_name=pending.page_name,
                               query_string=pending.query_string)
        return fold(self, new_data)

    sr.ScriptRequests._request_rerun_locked = request_rerun_locked
    sr.ScriptRequests._keeps_clicked_page = True
