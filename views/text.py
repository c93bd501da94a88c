"""Text page: type, and a character LSTM completes the word and proposes the next ones."""

import streamlit as st

from views.common import require_model
from pipelines import core
from pipelines import text as textlm

st.title("📝 Text")
st.caption("Type some text; the model completes the current word and proposes the next one, "
           "like a phone keyboard. Press Ctrl+Enter (or click outside the box) to update.")

names = sorted(p.stem for p in core.models_dir().glob("text*.keras"))
if not names:
    st.info("No trained text model yet. Train one on the Training page or with "
            "`python -m pipelines.text train --promote always`.")
    st.stop()


def describe(name: str) -> str:
    card = core.active_card(name) or {}
    return f"{name} (trained on {card.get('corpus', '?')})"


name = st.selectbox("Model", names, format_func=describe) if len(names) > 1 else names[0]
lm, vocab, card = require_model(name, textlm.load)

st.session_state.setdefault("prompt", "")


def append(words: str) -> None:
    st.session_state.prompt += words


prompt = st.text_area("Your text", key="prompt", height=120, max_chars=5000,
                      placeholder="Start typing, e.g. 'the free spirit'")
s = textlm.suggest(lm, vocab, prompt)
if s.dropped:
    st.caption("The model does not know these characters and leaves them out: "
               + " ".join(repr(c) for c in s.dropped))

label = f"Complete “{s.partial}”" if s.partial else "Next word"
st.write(f"**{label}**")
for col, (word, p) in zip(st.columns(3), s.completions):
    col.button(f"{word}  ·  {p:.0%}", key=f"complete-{word}", on_click=append,
               args=(word[len(s.partial):] + " ",), width="stretch")
if s.completions and s.next_words:
    rest = s.completions[0][0][len(s.partial):]
    st.write(f"**Then** (after “{s.completions[0][0]}”)")
    for col, (word, p) in zip(st.columns(3), s.next_words):
        col.button(f"{word}  ·  {p:.0%}", key=f"next-{word}", on_click=append,
                   args=(f"{rest} {word} ",), width="stretch")

st.divider()
st.subheader("Generate")
left, right = st.columns(2)
temperature = left.slider("Temperature (higher: more surprising)", 0.1, 1.5, 0.6, 0.05)
n_words = right.slider("Words", 3, 60, 15)
if st.button("Generate a continuation", icon="✨"):
    st.session_state.generated = textlm.generate(lm, vocab, prompt, n_words, temperature)
if generated := st.session_state.get("generated"):
    st.text_area("Continuation", generated, disabled=True)
    st.button("Append it to my text", on_click=append, args=(generated,))

test = card.get("test", {})
if "bits_per_char" in test:
    st.caption(f"Held-out text: {test['bits_per_char']:.2f} bits per character, next word in top 3 "
               f"{test['next_word_top3']:.0%} (character n-gram: {test['ngram']['bits_per_char']:.2f} bits, "
               f"{test['ngram']['next_word_top3']:.0%}).")
