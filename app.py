"""The app's entry and router: `streamlit run app.py`. Each page lives in views/.

Streamlit loads this file twice, in two roles:
- as the server's ASGI app (imported once; `__name__` is not "__main__"): `st.App` with the
  deep-link middleware, so a shared link such as /digits works as the very first request;
- as the script of every session (`__name__ == "__main__"`): the navigation, which runs the page.
"""

import streamlit as st

if __name__ == "__main__":
    from views.common import keep_clicked_page, keep_reruns_cheap, leave_other_pages

    keep_clicked_page()  # once per server process; a no-op after

    st.set_page_config(page_title="Neural playground", page_icon="🧠", layout="wide")
    PAGES = [
        st.Page("views/home.py", title="Home", icon="🏠", default=True),
        st.Page("views/digits.py", title="Digits", icon="✏️", url_path="digits"),
        st.Page("views/text.py", title="Text", icon="📝", url_path="text"),
        st.Page("views/mood.py", title="Mood", icon="🙂", url_path="mood"),
        st.Page("views/training.py", title="Training", icon="🏋️", url_path="training"),
    ]
    page = st.navigation(PAGES)
    leave_other_pages(page)
    try:
        page.run()
    finally:
        keep_reruns_cheap()
else:
    from starlette.middleware import Middleware

    from views.deeplinks import DeepLinks

    app = st.App(__file__, middleware=[Middleware(DeepLinks)])
