"""Home page: what the app does and links to each demo."""

import streamlit as st

st.title("Neural playground")
st.write("Small neural networks, trained on public data, that you can use in the browser.")
st.page_link("pages/digits.py", label="**Digits**: draw digits, a CNN trained on MNIST reads them live.", icon="✏️")
st.caption("Everything runs on this machine; nothing you draw, type or photograph leaves it.")
