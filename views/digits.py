"""Digits page: draw digits on a canvas, the MNIST CNN reads them as you draw."""

import numpy as np
import plotly.graph_objects as go
import streamlit as st
from streamlit_drawable_canvas import st_canvas

from views.common import require_model
from pipelines import digits

st.title("✏️ Digits")
st.caption("Draw one digit or several side by side. The model reads them left to right as you draw.")
predict_fn, card = require_model("digits", digits.load)

st.session_state.setdefault("canvas_gen", 0)
left, right = st.columns([3, 2])
with left:
    stroke = st.slider("Stroke width", 6, 40, 18)
    canvas = st_canvas(
        stroke_width=stroke, stroke_color="#000000", background_color="", height=280, width=560,
        drawing_mode="freedraw", return_image_data=True, update_streamlit=True,
        key=f"canvas-{st.session_state.canvas_gen}",
    )
    if st.button("Clear", icon="🧽"):
        st.session_state.canvas_gen += 1  # a new key gives a fresh, empty canvas
        st.rerun()

reading = digits.read_canvas(predict_fn, getattr(canvas, "image_data", None))
with right:
    if reading.status != "ok":
        st.info(reading.message)
        st.stop()
    if reading.confident:
        st.metric("I read", reading.number)
    else:
        st.metric("I read", reading.number, delta="not sure", delta_color="off")
        st.warning("Not sure: one of the digits looks ambiguous. Try drawing it larger and centred.")

for i, (image, probs) in enumerate(zip(reading.images, reading.probs)):
    seen, chart, teach = st.columns([1, 3, 2])
    seen.image(np.kron(image, np.ones((4, 4))), caption="what the model sees", clamp=True)
    top = np.argsort(probs)[::-1][:3]
    fig = go.Figure(go.Bar(x=probs[top], y=[f"{d}" for d in top], orientation="h",
                           text=[f"{p:.1%}" for p in probs[top]], textposition="auto"))
    fig.update_layout(height=160, margin=dict(l=0, r=0, t=0, b=0), xaxis=dict(range=[0, 1], tickformat=".0%"),
                      yaxis=dict(type="category", autorange="reversed", title="digit"))
    chart.plotly_chart(fig, key=f"probs-{i}")
    with teach.popover("Wrong? Teach it"):
        label = st.selectbox("The right digit", range(10), index=int(top[0]), key=f"label-{i}")
        if st.button("Save this drawing", key=f"save-{i}"):
            digits.save_feedback(image, label)
            st.success(f"Saved as a {label}. `python -m pipelines.digits train --with-feedback` will learn from it.")

if card.get("test"):
    st.caption(f"Model: {card.get('settings', {}).get('arch', '?')} CNN, "
               f"test accuracy {card['test']['accuracy']:.2%} on the 10,000 MNIST test images.")
