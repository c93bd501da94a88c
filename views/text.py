"""Text page: type, and a character LSTM completes the word and proposes the next ones."""

import uuid

import streamlit as st

from pipelines import core
from pipelines import text as textlm
from views.common import require_model
from views.components import typeahead

MAX_CHARS = 5000

st.title("📝 Text")
st.caption("Type some text: the model completes the word you are typing and proposes the next one, "
           "like a phone keyboard. Tap a suggestion to use it.")

names = core.active_models("text")
if not names:
    st.info("No trained text model yet. Train one on the Training page or with "
            "`python -m pipelines.text train --promote always`.")
    st.stop()


def describe(name: str) -> str:
    card = core.active_card(name) or {}
    return f"{name} (trained on {card.get('corpus', '?')})"


name = st.selectbox("Model", names, format_func=describe) if len(names) > 1 else names[0]
lm, vocab, card = require_model(name, textlm.load)


KEPT = "text-kept"  # what the person typed, kept when they visit another page and come back


def keep_text() -> None:
    # A callback: it also runs when the last keys arrive with a click on another page, where this
    # page's script does not run.
    st.session_state[KEPT] = (st.session_state.get("typed") or {}).get("text", "")
    (st.session_state.get("generated") or {}).pop("pending", None)  # the box has the appended text now


def append_continuation(text: str, new_text: str) -> None:
    st.session_state.set_text = {"text": new_text, "nonce": uuid.uuid4().hex}  # the box takes it from the server
    # "pending": the text of the click, until the box reports the new text
    st.session_state.generated.update(appended=new_text, pending=text)


@st.fragment
def writer() -> None:
    """Only this part reruns while the person types."""
    if "typed" in st.session_state:
        state = st.session_state.typed or {}
        text = state.get("text", "")
    else:  # back on the page: Streamlit dropped the box's state when the person left, the page kept the text
        state, text = {}, st.session_state.get(KEPT, "")
    s = textlm.suggest(lm, vocab, text)
    suggestions = {"for_text": text, "completions": s.completions, "next_words": s.next_words,
                   "next_after": s.next_after, "gap": s.gap}
    typeahead("typed", text, suggestions, MAX_CHARS, "Start typing, e.g. 'the free spirit'",
              st.session_state.get("set_text"), on_text_change=keep_text)
    if state.get("cut"):
        st.warning(f"Your text was longer than {MAX_CHARS:,} characters: the box keeps the last {MAX_CHARS:,} "
                   f"({state['cut']:,} cut from the start).")
    if s.unknown:
        st.caption("The model does not know these characters: " + textlm.describe_unknown(s.unknown) + ".")

    st.subheader("Generate")
    left, right = st.columns(2)
    temperature = left.slider("Temperature (higher: more surprising)", 0.1, 1.5, 0.6, 0.05)
    n_words = right.slider("Words", 3, 60, 15)
    if st.button("Generate a continuation", icon="✨"):
        st.session_state.generated = {"for": text, "text": textlm.generate(lm, vocab, text, n_words, temperature)}
    generated = st.session_state.get("generated")
    appended = generated and text in (generated.get("pending"), generated.get("appended"))
    if generated and (generated["for"] == text or appended):  # a continuation belongs to the text it was made for
        st.text_area("Continuation", textlm.in_context(generated["for"], generated["text"]), disabled=True)
        # Once appended, the button stays where it was, greyed: the panel does not fold up under the finger,
        # so the second tap of a double tap lands on it and not on the Words slider that would move there.
        st.button("Appended to your text" if appended else "Append it to my text", disabled=bool(appended),
                  on_click=append_continuation, args=(text, text + generated["text"]))
    elif generated:
        st.caption("The text changed since the last continuation: generate again to continue it.")


writer()

test = card.get("test", {})
if "bits_per_char" in test:
    st.caption(textlm.describe_score(test))
