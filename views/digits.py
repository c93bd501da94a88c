"""Digits page: draw digits on a canvas, the MNIST CNN reads them as you draw."""

import numpy as np
import pandas as pd
import streamlit as st
from streamlit_drawable_canvas import st_canvas

from pipelines import core, digits
from views.common import require_model
from views.components import canvas_toolbar_above, column_width

MAX_CANVAS = 560  # CSS px; narrower columns (phones, a narrow window) get a canvas that fits them

st.title("✏️ Digits")
st.caption("Draw one digit or several side by side. The model reads them left to right as you draw.")
predict_fn, card = require_model("digits", digits.load)
st.session_state.setdefault("canvas_gen", 0)


def where(path) -> str:
    try:
        return str(path.relative_to(core.ROOT))
    except ValueError:
        return str(path)


def teach(i: int, image, top: int) -> None:
    with st.popover("Wrong? Teach it"):
        label = st.selectbox("The right digit", range(10), index=top, key=f"label-{i}")
        if st.button("Save this drawing", key=f"save-{i}"):
            path, new = digits.save_feedback(image, label)
            folder = where(path.parent)
            if new:
                st.success(f"Saved as a {label} in `{folder}/` on this server. It is used when a digits model is "
                           "trained with “Include 'teach it' drawings” on the Training page.")
            else:
                st.info(f"This drawing is already saved as a {label} in `{folder}/`: nothing added.")


@st.fragment
def board() -> None:
    """The canvas and its reading: a stroke reruns only this part."""
    left, right = st.columns([3, 2])
    with left:
        width = min(MAX_CANVAS, column_width("canvas-width") or 320)
        stroke = st.slider("Stroke width", 6, 40, max(6, round(18 * width / MAX_CANVAS)))
        canvas = st_canvas(
            stroke_width=stroke, stroke_color="#000000", background_color="", height=width // 2, width=width,
            drawing_mode="freedraw", return_image_data=True, update_streamlit=True,
            key=f"canvas-{st.session_state.canvas_gen}",  # the same canvas when its width changes: strokes stay
        )
        canvas_toolbar_above()
        if st.button("Clear", icon="🧽"):
            st.session_state.canvas_gen += 1  # a new key gives a fresh, empty canvas
            st.rerun(scope="fragment")

    reading = digits.read_canvas(predict_fn, getattr(canvas, "image_data", None))
    with right:
        if reading.status != "ok":
            st.info(reading.message)
            return
        if reading.confident:
            st.metric("I read", reading.number)
        else:
            st.metric("I read", reading.number, delta="not sure", delta_color="off")
            st.warning("Not sure: one of the digits looks ambiguous. Try drawing it larger and centred.")

    for i, (image, probs) in enumerate(zip(reading.images, reading.probs)):
        seen, chart, fix = st.columns([1, 3, 2], vertical_alignment="center")
        seen.image(np.kron(image, np.ones((3, 3))), caption="what the model sees", clamp=True)
        top = np.argsort(probs)[::-1][:3]
        chart.dataframe(pd.DataFrame({"digit": [str(d) for d in top], "probability": probs[top]}), hide_index=True,
                        column_config={"probability": st.column_config.ProgressColumn(
                            "probability", format="percent", min_value=0.0, max_value=1.0)},
                        key=f"probs-{i}", width="stretch")
        with fix:
            teach(i, image, int(top[0]))


board()
if card.get("test"):
    st.caption(f"Model: {card.get('settings', {}).get('arch', '?')} CNN, "
               f"test accuracy {card['test']['accuracy']:.2%} on the 10,000 MNIST test images.")
