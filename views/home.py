"""Home page: what the app does and links to each demo."""

import streamlit as st

DEMOS = [
    ("views/digits.py", "Digits", "✏️", "Draw digits; a CNN trained on MNIST reads them live."),
    ("views/text.py", "Text", "📝", "Type; a character LSTM completes your words."),
    ("views/mood.py", "Mood", "🙂", "A webcam snapshot; a CNN reads your expression and suggests songs."),
    ("views/training.py", "Training", "🏋️", "Retrain any of the models, watch the curves, promote the best."),
]

st.title("Neural playground")
st.write("Small neural networks, trained on public data, that you can use in the browser.")
for page, title, icon, what in DEMOS:
    with st.container(border=True):
        st.page_link(page, label=f"**{title}**", icon=icon)
        st.caption(what)
st.caption("Everything runs on this machine; nothing you draw, type or photograph leaves it.")
