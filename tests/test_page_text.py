"""AppTest of the text page: no model, empty prompt, a prompt, clicking a suggestion."""

from conftest import ROOT
from streamlit.testing.v1 import AppTest

PAGE = str(ROOT / "views/text.py")


def run_page(prompt=None):
    at = AppTest.from_file(PAGE, default_timeout=60)
    if prompt is not None:
        at.session_state["prompt"] = prompt
    return at.run()


def test_no_model_gives_a_clear_message():
    at = run_page()
    assert not at.exception and "No trained text model" in at.info[0].value


def test_empty_prompt_proposes_next_words(tiny_text_model, monkeypatch):
    monkeypatch.setenv("MODELS_DIR", str(tiny_text_model[2]))
    at = run_page("")
    assert not at.exception
    assert any("Next word" in m.value for m in at.markdown)
    assert len([b for b in at.button if b.key and b.key.startswith("complete-")]) == 3


def test_a_prompt_gets_completions_and_a_click_appends(tiny_text_model, monkeypatch):
    monkeypatch.setenv("MODELS_DIR", str(tiny_text_model[2]))
    at = run_page("the cat sat on the m")
    assert not at.exception
    chips = [b for b in at.button if b.key and b.key.startswith("complete-")]
    assert len(chips) == 3 and any("Complete “m”" in m.value for m in at.markdown)
    word = chips[0].key.removeprefix("complete-")
    chips[0].click().run()
    assert at.session_state["prompt"] == f"the cat sat on the {word} "


def test_unknown_characters_are_reported(tiny_text_model, monkeypatch):
    monkeypatch.setenv("MODELS_DIR", str(tiny_text_model[2]))
    at = run_page("the cat \U0001F600 sat")
    assert not at.exception and "leaves them out" in at.caption[1].value


def test_generate_button(tiny_text_model, monkeypatch):
    monkeypatch.setenv("MODELS_DIR", str(tiny_text_model[2]))
    at = run_page("the cat")
    next(b for b in at.button if "Generate" in b.label).click().run()
    assert not at.exception and at.session_state["generated"]


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
    assert not at.exception and len([b for b in at.button if b.key and b.key.startswith("complete-")]) == 3
