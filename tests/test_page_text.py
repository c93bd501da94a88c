"""AppTest of the text page: no model, empty text, typed text, a continuation tied to its text.

The text box is a browser component (views/static/typeahead.*): here the typed text is put in its
state as the browser would, and the suggestions it is sent are read back from the page. What a
click on a chip does to the text on screen is tested in a real browser (test_browser.py)."""

import json

from conftest import ROOT
from streamlit.testing.v1 import AppTest

PAGE = str(ROOT / "views/text.py")


def run_page(text=None, cut=0):
    at = AppTest.from_file(PAGE, default_timeout=60)
    if text is not None:
        at.session_state["typed"] = {"text": text, "cut": cut}
    return at.run()


def sent_to_box(at) -> dict:
    """The data the page sent to the text box (what the browser would show)."""
    box = next(e for e in at.get("bidi_component") if e.proto.component_name.endswith("typeahead"))
    return json.loads(box.proto.json)


def test_no_model_gives_a_clear_message():
    at = run_page()
    assert not at.exception and "No trained text model" in at.info[0].value


def test_empty_text_proposes_next_words(tiny_text_model, monkeypatch):
    monkeypatch.setenv("MODELS_DIR", str(tiny_text_model[2]))
    at = run_page("")
    assert not at.exception
    s = sent_to_box(at)["suggestions"]
    assert s["for_text"] == "" and 1 <= len(s["completions"]) <= 3


def test_typed_text_gets_completions_of_the_word_being_typed(tiny_text_model, monkeypatch):
    monkeypatch.setenv("MODELS_DIR", str(tiny_text_model[2]))
    at = run_page("the cat sat on the M")
    assert not at.exception
    s = sent_to_box(at)["suggestions"]
    assert s["for_text"] == "the cat sat on the M"  # tied to the exact text, case and all
    assert s["completions"] and all(w.startswith("m") for w, _ in s["completions"])
    assert s["next_words"]


def test_a_long_paste_is_kept_and_said(tiny_text_model, monkeypatch):
    monkeypatch.setenv("MODELS_DIR", str(tiny_text_model[2]))
    at = run_page("the cat sat " * 400, cut=1000)
    assert not at.exception
    assert "keeps the last 5,000" in at.warning[0].value and "1,000 cut" in at.warning[0].value


def test_unknown_characters_are_reported(tiny_text_model, monkeypatch):
    monkeypatch.setenv("MODELS_DIR", str(tiny_text_model[2]))
    at = run_page("the cat \U0001F600 s\u00e4t")
    assert not at.exception
    assert any("'\u00e4' read as 'a', '\U0001F600' left out" in c.value for c in at.caption)


def test_a_continuation_belongs_to_its_text(tiny_text_model, monkeypatch):
    monkeypatch.setenv("MODELS_DIR", str(tiny_text_model[2]))
    at = run_page("the cat")
    next(b for b in at.button if "Generate" in b.label).click().run()
    generated = at.session_state["generated"]
    assert not at.exception and generated["for"] == "the cat"
    next(b for b in at.button if "Append" in b.label).click().run()
    assert at.session_state["set_text"]["text"] == "the cat" + generated["text"]
    assert sent_to_box(at)["set_text"]["text"] == "the cat" + generated["text"]
    # The button stays in its place, greyed, until the text changes: before and after the box has the text.
    for typed in ("the cat", "the cat" + generated["text"]):
        at.session_state["typed"] = {"text": typed, "cut": 0}
        at.run()
        done = next(b for b in at.button if "Append" in b.label)
        assert done.label == "Appended to your text" and done.disabled
    at.session_state["typed"] = {"text": "a new text", "cut": 0}
    at.run()
    assert not [b for b in at.button if "Append" in b.label]  # the old continuation is not offered
    assert any("generate again" in c.value for c in at.caption)


def test_a_choice_of_model_when_several_are_trained(tiny_text_model, monkeypatch, tmp_path):
    from pipelines import core

    models = tiny_text_model[2]
    for suffix in ("keras", "json", "vocab.json"):
        core.atomic_copy(models / f"text.{suffix}", tmp_path / f"text.{suffix}")
        core.atomic_copy(models / f"text.{suffix}", tmp_path / f"text-sherlock.{suffix}")
    monkeypatch.setenv("MODELS_DIR", str(tmp_path))
    at = run_page("the cat")
    assert not at.exception and [o.split()[0] for o in at.selectbox[0].options] == ["text", "text-sherlock"]
    at.selectbox[0].set_value("text-sherlock").run()
    assert not at.exception and sent_to_box(at)["suggestions"]["completions"]
