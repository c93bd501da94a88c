"""Digits page: draw digits on a canvas, the MNIST CNN reads them as you draw."""

import numpy as np
import streamlit as st
from streamlit_drawable_canvas import st_canvas

from pipelines import core, digits
from views.common import require_model
from views.components import canvas_toolbar_above, column_width, tab_id

MAX_CANVAS = 560  # CSS px; narrower columns (phones, a narrow window) get a canvas that fits them

st.title("✏️ Digits")
st.caption("Draw one digit or several side by side. The model reads them left to right as you draw.")
predict_fn, card = require_model("digits", digits.load)
st.session_state.setdefault("canvas_cleared", 0)
# Streamlit drops a widget's state when the person visits another page: the drawing is kept here
# (strokes and image) and drawn again when they come back.
KEY, KEPT, START, WIDTH, STALE = "canvas", "canvas-kept", "canvas-start", "canvas-width-last", "canvas-stale"
PEN, PEN_WIDGET = "pen-width", "pen-width-slider"  # the stroke width picked (kept across pages), its slider
PEN_SET = "pen-width-set"  # how many times the server has set the slider (its key's suffix, see set_pen)
DRAWN_AT = "canvas-drawn-width"  # the width the canvas was last given
TAB = "browser-tab"  # this browser tab's id: a reload (F5) starts a new session, the tab keeps its id
st.session_state.setdefault(START, None)


@st.cache_resource
def drawings() -> core.Memo:
    """The latest drawing and pen width of each browser tab, for the tab to have them back after a reload:
    a reload starts a new session, and the canvas keeps nothing in the browser. Bounded: the oldest go."""
    return core.Memo(256)


def remember() -> None:
    if tab := st.session_state.get(TAB):
        drawings().put(tab, {"kept": st.session_state.get(KEPT), "pen": st.session_state.get(PEN)})


def restore(tab: str) -> bool:
    """Once per session, when the tab's id arrives: the tab's drawing and pen width from before a reload."""
    first, changed = st.session_state.get(TAB) is None, st.session_state.get(TAB) != tab
    st.session_state[TAB] = tab
    if changed and not first:  # a duplicated tab took an id of its own: what it shows is kept under that one
        remember()
    saved = drawings().get(tab) if first and not st.session_state.get(KEPT) else None
    if not saved:
        return False
    st.session_state[KEPT] = saved["kept"]
    if saved["pen"] is not None:
        st.session_state[PEN] = saved["pen"]
        set_pen()
    return saved["kept"] is not None


def pen_key() -> str:
    return f"{PEN_WIDGET}-{st.session_state.get(PEN_SET, 0)}"


def set_pen() -> None:
    """The server sets the pen slider (its default for the canvas's size, the width from before a reload): a new
    slider, under a new key, starts from the width. A report of the old slider's value still on its way, sent
    before this run reached the browser, would otherwise count as the person's pick and overwrite it (seen after
    a reload: the restored 20 became the 10 shown for a moment before it, and was kept as the tab's width)."""
    st.session_state[PEN_SET] = st.session_state.get(PEN_SET, 0) + 1


def sent(key: str) -> dict:
    """The drawing the canvas last sent: its strokes (`raw`) and PNG data URL (`data`); {} before it sent one."""
    return (st.session_state.get(key) or {}).get("drawing") or {}


def keep_drawing(key: str) -> None:
    # A callback: it also runs when the last stroke arrives with a click on another page, where this
    # page's script does not run.
    drawing = sent(key)
    if not drawing.get("data") or drawing["data"] == st.session_state.get(STALE):
        return
    png = digits.png_from_data_url(drawing["data"])
    if png != (st.session_state.get(KEPT) or {}).get("png"):  # a new drawing: the canvas's width it was drawn at
        st.session_state[KEPT] = {"raw": drawing.get("raw"), "png": png, "width": st.session_state.get(DRAWN_AT)}
        remember()


def pick_pen() -> None:
    st.session_state[PEN] = st.session_state[pen_key()]
    remember()
    start_from_kept(st.session_state.get(DRAWN_AT))


def start_from_kept(width: int | None) -> None:
    """Make the latest drawing, scaled to the canvas's `width`, the one the canvas starts from, when a setting
    of the canvas changes. Streamlit's frontend runs a component's code again for every change of its settings,
    and when two such runs overlap (fast steps of the pen-width slider, a window being resized) it disposes of
    the canvas, which the canvas component then builds anew from `initial_drawing`: that was the empty drawing
    of the last Clear, and the person's digits vanished. A canvas that is kept loads the same strokes again
    (its undo history starts over)."""
    keep_drawing(KEY)
    start_from(st.session_state.get(KEPT), width)


def start_from(kept: dict | None, width: int | None) -> None:
    start = st.session_state.get(START)
    if not kept:
        return
    at = kept.get("width") or width
    raw = digits.scale_drawing(kept["raw"], width / at) if width and at else kept["raw"]
    if raw != (start or {}).get("raw"):
        st.session_state[START] = {**kept, "raw": raw}


def where(path) -> str:
    try:
        return str(path.relative_to(core.ROOT))
    except ValueError:
        return str(path)


def enlarged(image):
    """The 28x28 image the model saw, three times larger (pixel for pixel, not smoothed)."""
    return np.kron(image, np.ones((3, 3)))


@st.dialog("Teach it")
def teach(image, top: int) -> None:
    """A dialog, in the middle of the screen: a popover opened under the reading could reach below a
    phone's screen, its Save button out of reach."""
    st.image(enlarged(image), caption="what the model saw", clamp=True)
    label = st.selectbox("The right digit", range(10), index=top, key="teach-label")
    if st.button("Save this drawing", type="primary", key="teach-save"):
        path, new = digits.save_feedback(image, label)
        folder = where(path.parent)
        if new:
            st.success(f"Saved as a {label} in `{folder}/` on this server. It is used when a digits model is "
                       "trained with “Include 'teach it' drawings” on the Training page.")
        else:
            st.info(f"This drawing is already saved as a {label} in `{folder}/`: nothing added.")


def ink() -> str:
    """The pen's colour for the page's theme: black ink on a dark page was all but invisible. The model reads
    the ink from the canvas's alpha (it is transparent), so the colour is the person's alone."""
    return "#f2f2f2" if st.context.theme.type == "dark" else "#000000"


@st.fragment
def board() -> None:
    """The canvas and its reading: a stroke reruns only this part."""
    left, right = st.columns([3, 2])
    with left:
        tab = tab_id("tab-id")
        restored = bool(tab) and restore(tab)
        measured = column_width("canvas-width")
        if measured:  # kept: back on this page the canvas starts at its width instead of 320 px, then jumping
            st.session_state[WIDTH] = measured
        width = min(MAX_CANVAS, measured or st.session_state.get(WIDTH) or 320)
        if st.session_state.get(DRAWN_AT, width) != width:  # resized: the strokes with it, see start_from_kept
            start_from_kept(width)
        if restored:  # the drawing from before the reload, at this canvas's width
            start_from(st.session_state[KEPT], width)
        st.session_state[DRAWN_AT] = width
        pen = st.session_state.get(PEN)  # the width picked; until then it follows the canvas's size
        if pen is None and st.session_state.get(pen_key()) != (pen := max(6, round(18 * width / MAX_CANVAS))):
            set_pen()
        stroke = st.slider("Stroke width", 6, 40, value=pen, key=pen_key(), on_change=pick_pen)
        key = KEY  # one key: the same canvas when its width changes or it is cleared, strokes stay
        if key not in st.session_state:  # mounted again: the person comes back from another page
            st.session_state[START] = st.session_state.get(KEPT)
        start = st.session_state[START] or {}
        canvas = st_canvas(
            stroke_width=stroke, stroke_color=ink(), background_color="", height=width // 2, width=width,
            drawing_mode="freedraw", return_image_data=True, update_streamlit=True,
            initial_drawing=start.get("raw"), key=key, on_change=lambda: keep_drawing(key),
        )
        canvas_toolbar_above()
        st.button("Clear", icon="🧽", on_click=clear, args=(key,))

    png = canvas.image_bytes
    stale = st.session_state.get(STALE)
    if stale is not None and png is not None and sent(key).get("data") != stale:
        # The canvas has reported since the clear: from now on every drawing counts, one drawn again the
        # same to the pixel as the cleared one included.
        st.session_state[STALE] = stale = None
    if png is not None and stale is not None:
        png = None  # cleared: the canvas has not sent its empty drawing yet
    elif png is None:  # not reported yet: the restored drawing, if any
        png = start.get("png")
    reading = digits.read_canvas(predict_fn, digits.rgba_from_png(png))
    with right:
        if reading.status != "ok":
            st.info(reading.message)
            return
        outcomes = getattr(reading, "outcomes", None) or ["digit" if p.max() >= digits.CONFIDENT else "unsure"
                                                          for p in reading.probs]
        # "not sure" only for a digit it is unsure of: a mark that is not a digit is a "?" with its warning below
        # (it read "↑ not sure" beside a dot).
        st.metric("I read", reading.number, delta="not sure" if "unsure" in outcomes else None, delta_color="off",
                  delta_arrow="off")
        if "not a digit" in outcomes:
            st.warning(f"{positions(outcomes, 'not a digit')} does not look like a digit to me (a letter, a "
                       "scribble?). Shown as “?”.")
        if "unsure" in outcomes:
            st.warning(f"Not sure about {positions(outcomes, 'unsure').lower()}: it could be more than one digit. "
                       "Try drawing it larger and centred.")

    for i, (image, probs, outcome) in enumerate(zip(reading.images, reading.probs, outcomes)):
        seen, chart, fix = st.columns([1, 3, 2], vertical_alignment="center")
        seen.image(enlarged(image), caption=OUTCOME.get(outcome, outcome), clamp=True)
        top = np.argsort(probs)[::-1][:3]
        for d in top:
            chart.progress(float(probs[d]), text=f"**{d}**  {probs[d]:.1%}")
        if fix.button("Wrong? Teach it", key=f"teach-{i}"):
            teach(image, int(top[0]))


def clear(key: str) -> None:
    """Empty the canvas in place (a callback: the run it starts already draws the empty canvas): a new
    `initial_drawing` (never the same twice) makes the canvas load it and send the empty drawing.
    A new widget key would mount a second canvas instead, and under load the old one stays on screen
    for a moment with the new one below it: a stroke then lands on the wrong one or moves with the page."""
    st.session_state.canvas_cleared += 1
    st.session_state[START] = {"raw": {"objects": [], "cleared": st.session_state.canvas_cleared}}
    st.session_state[KEPT] = None
    remember()
    st.session_state[STALE] = sent(key).get("data")  # the last drawing, until the canvas reports the empty one


OUTCOME = {"digit": "what the model sees", "unsure": "what the model sees: not sure",
           "not a digit": "what the model sees: not a digit"}


def positions(outcomes: list, which: str) -> str:
    """'The 2nd mark' / 'The 1st and 3rd marks' (or 'This mark' when there is one)."""
    picks = [i + 1 for i, o in enumerate(outcomes) if o == which]
    if len(outcomes) == 1:
        return "This mark"
    names = [{1: "1st", 2: "2nd", 3: "3rd"}.get(n, f"{n}th") for n in picks]
    return f"The {' and '.join(names)} mark" + ("s" if len(picks) > 1 else "")


board()
if card.get("test"):
    st.caption(f"Model: CNN {card.get('version', '')}, "
               f"test accuracy {card['test']['accuracy']:.2%} on the 10,000 MNIST test images.")
