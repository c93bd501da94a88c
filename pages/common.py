"""Helpers shared by the pages: cached read-only models and the no-model path."""

from __future__ import annotations

import streamlit as st

from pipelines import core


@st.cache_resource(show_spinner="Loading the model...", max_entries=8)
def _load(_loader, name: str, path: str, version: float):
    # Keyed on the file and its mtime: a promoted model gets a fresh entry, no restart needed.
    return _loader(name)


def require_model(name: str, loader):
    """What `loader(name)` returns for the active model `name`, or a clear message and stop."""
    try:
        return _load(loader, name, str(core.model_path(name)), core.model_version(name))
    except core.ModelUnavailable as exc:
        st.info(str(exc))
        st.stop()
