"""Home page: what the app does and links to each demo."""

import streamlit as st

st.title("Neural playground")
st.write("Small neural networks, trained on public data, that you can use in the browser.")
st.page_link("views/digits.py", label="**Digits**: draw digits, a CNN trained on MNIST reads them live.", icon="✏️")
st.page_link("views/text.py", label="**Text**: type, a character LSTM completes your words.", icon="📝")
st.page_link("views/mood.py", label="**Mood**: a webcam snapshot, a CNN reads your expression and suggests songs.",
             icon="🙂")
st.page_link("views/training.py", label="**Training**: retrain any of the models, watch the curves, promote the best.",
             icon="🏋️")
st.caption("Everything runs on this machine; nothing you draw, type or photograph leaves it.")
