"""The app's router: `streamlit run app.py`. Each page lives in pages/."""

import streamlit as st

st.set_page_config(page_title="Neural playground", page_icon="🧠", layout="wide")
PAGES = [
    st.Page("pages/home.py", title="Home", icon="🏠", default=True),
    st.Page("pages/digits.py", title="Digits", icon="✏️", url_path="digits"),
    st.Page("pages/text.py", title="Text", icon="📝", url_path="text"),
    st.Page("pages/mood.py", title="Mood", icon="🙂", url_path="mood"),
    st.Page("pages/training.py", title="Training", icon="🏋️", url_path="training"),
]
st.navigation(PAGES).run()
