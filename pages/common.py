"""Helpers shared by the pages: cached read-only models and the no-model path."""

from __future__ import annotations

import streamlit as st

from pipelines import core


@st.cache_resource(show_spinner="Loading the model...", max_entries=6)
def _load(task: str, path: str, version: float):
    # `version` is the model file's mtime: a promoted model gets a new cache entry.
    model = core.load_model(path)
    return model, core.fast_predict(model), core.active_card(task) or {}


def require_model(task: str):
    """(model, predict_fn, card) of the active model, or a clear message and stop."""
    try:
        return _load(task, str(core.model_path(task)), core.model_version(task))
    except core.ModelUnavailable as exc:
        st.info(str(exc))
        st.stop()
