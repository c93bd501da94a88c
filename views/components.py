"""Two small Streamlit components (Components v2) that the pages need and Streamlit lacks.

- `column_width`: the width in CSS pixels of the column it is placed in, so the digits canvas
  can be sized to fit at every screen width (a canvas has a fixed pixel size).
- `canvas_toolbar_above`: moves streamlit-drawable-canvas's hover-only toolbar off the drawing area,
  where it swallows strokes that start in the top-right corner (a finger cannot hover).
- `tab_id`: an id of the browser tab that survives a reload (F5), so the server can give back a drawing.
- `typeahead`: a text box that reports the text as it is typed (debounced), shows the best
  completion as ghost text that Tab accepts, and suggestion chips that act on the text on
  screen *now* (never on a suffix computed for older text), keeping the typed case.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

HERE = Path(__file__).resolve().parent / "static"

_width_probe = st.components.v2.component(
    "neural_playground.column_width",
    html="<div class='probe'></div>",
    css=".probe { width: 100%; height: 0; }",
    js=(HERE / "column_width.js").read_text(encoding="utf-8"),
)

_canvas_toolbar = st.components.v2.component(
    "neural_playground.canvas_toolbar_above",
    js=(HERE / "canvas_toolbar.js").read_text(encoding="utf-8"),
)

_tab_id = st.components.v2.component(
    "neural_playground.tab_id",
    js=(HERE / "tab_id.js").read_text(encoding="utf-8"),
)

_typeahead = st.components.v2.component(
    "neural_playground.typeahead",
    html=(HERE / "typeahead.html").read_text(encoding="utf-8"),
    css=(HERE / "typeahead.css").read_text(encoding="utf-8"),
    js=(HERE / "typeahead.js").read_text(encoding="utf-8"),
)


def _ignore() -> None:
    return None


def column_width(key: str) -> int | None:
    """The column's width in CSS pixels, or None on the very first run (not measured yet)."""
    result = _width_probe(key=key, default={"width": None}, on_width_change=_ignore, height=0)
    width = result.get("width") if hasattr(result, "get") else getattr(result, "width", None)
    return int(width) if width else None


def canvas_toolbar_above() -> None:
    """Moves the drawing canvas's hover-only toolbar out of the drawing area (see canvas_toolbar.js)."""
    _canvas_toolbar(key="canvas-toolbar-above", height=0)


def tab_id(key: str) -> str | None:
    """This browser tab's id (kept in its sessionStorage: the same after a reload), or None on the very first
    run (not reported yet) and where the browser keeps no storage."""
    result = _tab_id(key=key, default={"id": None}, on_id_change=_ignore, height=0)
    found = result.get("id") if hasattr(result, "get") else getattr(result, "id", None)
    return str(found) if found else None


def typeahead(key: str, text: str, suggestions: dict, max_chars: int, placeholder: str = "",
              set_text: dict | None = None, on_text_change=None):
    """Mount the text box. `suggestions` carries the text it was computed for (`for_text`), so the
    box shows only suggestions that fit what is on screen. `set_text` ({"text", "nonce"}) replaces
    the text from the server (e.g. "append the continuation"). Returns the component's state:
    `text` (what is typed, at most `max_chars`) and `cut` (characters cut from a longer paste).
    `text` is the text the server knows: the box starts with it when it is mounted again.
    `on_text_change` runs when new text arrives, even when it arrives with a click on another page."""
    data = {"text": text, "suggestions": suggestions, "max_chars": max_chars, "placeholder": placeholder,
            "set_text": set_text or {}}
    return _typeahead(key=key, data=data, default={"text": "", "cut": 0},
                      on_text_change=on_text_change or _ignore, on_cut_change=_ignore)
