"""Unit tests of pipelines.text: windows, vocabulary, unknown characters, search, training."""

import numpy as np
import pytest
from conftest import TINY_TEXT as TINY

from pipelines import core, runs
from pipelines import text as T
from pipelines.training import warm_start


class WordLM:
    """A hand-made language model: words drawn from a fixed distribution, then a space."""

    chars = [" ", "a", "b", "c"]
    words = {"ab": 0.5, "abc": 0.3, "b": 0.2}

    def _probs(self, prefix):
        p = np.zeros(4)
        mass = sum(v for w, v in self.words.items() if w.startswith(prefix))
        for w, v in self.words.items():
            if w.startswith(prefix):
                nxt = w[len(prefix)] if len(w) > len(prefix) else " "
                p[self.chars.index(nxt)] += v / mass
        return p

    def start(self, ids):
        return [""], self._probs("")[None]

    def advance(self, states, rows, ids):
        states = [states[r] + self.chars[i] for r, i in zip(rows, ids)]
        return states, np.stack([self._probs(s) for s in states])


def test_beam_search_finds_the_top_words_with_their_probabilities():
    words = T.beam_words(WordLM(), np.array([0]), "", k=3)
    assert [w for w, _ in words] == ["ab", "abc", "b"]
    np.testing.assert_allclose([p for _, p in words], [0.5, 0.3, 0.2])


def test_beam_search_continues_a_typed_prefix():
    lm = WordLM()
    lm.start = lambda ids: (["a"], lm._probs("a")[None])
    assert [w for w, _ in T.beam_words(lm, np.array([1]), "a", k=2)] == ["ab", "abc"]


def test_window_starts_and_dataset_targets():
    ids = np.arange(50, dtype=np.int32)
    assert T.window_starts(50, 40, 3).tolist() == [0, 3, 6, 9]
    base = T.Settings.baseline()
    x, y = next(iter(T.make_dataset(ids, base, shuffle=False)))
    assert x.shape == (4, 40) and y.numpy().tolist() == [40, 43, 46, 49]
    x, y = next(iter(T.make_dataset(ids, T.Settings(), shuffle=False)))
    assert y.shape == (4, 40) and (y.numpy() == x.numpy() + 1).all()


def test_vocab_round_trip_and_unknown_characters(tmp_path):
    vocab = T.build_vocab(T.normalize(TINY))
    core.write_json(tmp_path / "v.json", vocab)
    assert core.read_json(tmp_path / "v.json") == vocab
    ids, unknown = T.encode("The CAT\u2019s \u00e9t\u00e9 \U0001F600", vocab)
    # The curly quote became "'", unknown here; an accented letter is read as its letter ("été" as "ete",
    # not "t"), what has no letter is left out.
    assert unknown == {"'": "", "\u00e9": "e", "\U0001F600": ""}
    assert "".join(vocab["chars"][i] for i in ids) == "the cats ete "
    assert T.describe_unknown(unknown) == "\"'\" left out, '\u00e9' read as 'e', '\U0001F600' left out"


def test_trailing_word():
    assert T.trailing_word("the free spi") == "spi"
    assert T.trailing_word("the free ") == ""
    assert T.trailing_word("don't") == "don't"


def test_ngram_is_a_distribution_and_learns_patterns():
    vocab = T.build_vocab(T.normalize(TINY))
    ids, _ = T.encode(TINY, vocab)
    lm = T.NgramLM(ids, vocab["chars"], order=4)
    p = lm.probs(T.encode("the ca", vocab)[0].tolist())
    assert p.sum() == pytest.approx(1.0) and vocab["chars"][p.argmax()] == "t"
    assert [w for w, _ in T.beam_words(lm, T.encode("the c", vocab)[0], "c", k=1)] == ["cat"]


def test_train_saves_and_reloads(tiny_text_model, monkeypatch):
    run, card, models = tiny_text_model
    monkeypatch.setenv("MODELS_DIR", str(models))
    assert run.state == "finished"
    assert {"bits_per_char", "next_char_top1", "next_word_top3"} <= card["test"].keys()
    assert card["test"]["ngram"]["bits_per_char"] > 0
    lm, vocab, active = T.load()
    words = vocab.pop("words")
    assert active["run"] == run.id and vocab == core.read_json(run.dir / "model.vocab.json")
    assert set(words.words) == {"the", "cat", "sat", "on", "mat", "dog", "log", "a", "and"}
    assert card["test"]["filtered_to_corpus_words"]


def test_stepwise_state_matches_the_full_model(tiny_text_model, monkeypatch):
    _, _, models = tiny_text_model
    monkeypatch.setenv("MODELS_DIR", str(models))
    lm, vocab, _ = T.load()
    model = core.load_model(core.model_path("text"))
    ids, _ = T.encode("the cat sat on the m", vocab)
    full = model.predict_on_batch(ids[None])[0]  # probabilities after each prefix
    states, probs = lm.start(ids[:10])
    np.testing.assert_allclose(probs[0], full[9], atol=1e-5)
    _, read = lm.extend(states, ids[10:])  # the rest in one call, as suggest reads a completion on
    np.testing.assert_allclose(read[0], full[-1], atol=1e-5)
    for t in range(10, len(ids)):
        states, probs = lm.advance(states, np.array([0]), ids[t:t + 1])
        np.testing.assert_allclose(probs[0], full[t], atol=1e-5)


def test_the_reading_start_stays_put_while_a_person_types():
    assert [T.reading_start(n, 40) for n in (0, 39, 40, 79, 80, 119, 120)] == [0, 0, 0, 0, 40, 40, 80]
    for n in range(40, 400):
        assert 40 <= n - T.reading_start(n, 40) < 80  # 40 to 79 characters read


def test_a_key_typed_reads_one_character_on_and_reads_as_a_fresh_model(tiny_text_model, monkeypatch):
    _, _, models = tiny_text_model
    monkeypatch.setenv("MODELS_DIR", str(models))
    typing, vocab, _ = T.load()
    ids, _ = T.encode("the cat sat on the mat and the dog sat on the log " * 3, vocab)
    read = []
    extend = typing.extend
    typing.extend = lambda states, more: read.append(len(more)) or extend(states, more)
    for n in range(1, len(ids) + 1):
        states, probs = typing.start(ids[:n])
        fresh = T.load()[0]  # an empty memo: reads the whole text from reading_start
        np.testing.assert_allclose(probs, fresh.start(ids[:n])[1], atol=1e-5)
    # one character a key, except where the reading start moves on (every 40 keys from the 80th: 40 read)
    assert read == [40 if n % 40 == 0 and n >= 80 else 1 for n in range(1, len(ids) + 1)]
    assert typing.start(ids[:30])[1] is typing.start(ids[:30])[1]  # the same text again: remembered
    def words(lm):
        s = T.suggest(lm, vocab, "the cat sat on the m")
        return [w for w, _ in s.completions], [w for w, _ in s.next_words]

    assert words(typing) == words(T.load()[0])
    before = len(read)
    T.suggest(typing, vocab, "the cat sat on the m")  # a rerun with the same text: nothing read again
    assert len(read) == before


class ScriptLM:
    """A model that can only say one text: its next character is certain."""

    chars = ["\n", " ", "a", "b"]
    script = "ab\nab ab\n\nab ab\nb "

    def _probs(self, n):
        return np.eye(len(self.chars))[self.chars.index(self.script[n % len(self.script)])]

    def start(self, ids):
        return [0], self._probs(0)[None]

    def advance(self, states, rows, ids):
        states = [states[r] + 1 for r in rows]
        return states, np.stack([self._probs(n) for n in states])


class TypedWordLM(WordLM):
    """After "ab" the likeliest is that the word ends; "abc" is rare, "abd" almost never."""

    chars = [" ", "a", "b", "c", "d"]
    words = {"ab": 0.9, "abc": 0.096, "abd": 0.004}

    def _probs(self, text):
        word = text.split(" ")[-1]
        p = np.zeros(len(self.chars))
        for w, v in self.words.items():
            if w.startswith(word):
                p[self.chars.index(w[len(word)] if len(w) > len(word) else " ")] += v
        return p / p.sum()

    def start(self, ids):
        text = "".join(self.chars[i] for i in ids)
        return [text], self._probs(text)[None]


def test_a_typed_word_is_not_its_own_completion_and_the_next_words_follow_it():
    lm = TypedWordLM()
    vocab = {"chars": lm.chars, "words": T.Lexicon(lm.words)}
    s = T.suggest(lm, vocab, "ab")
    # The next words follow "ab", the word most likely typed (they followed "abc", and the page said
    # "Then (after 'abc')" while a click on one wrote it after "ab").
    assert [w for w, _ in s.completions] == ["abc", "abd"] and s.next_after == "ab"
    assert [w for w, _ in s.next_words] == ["ab", "abc", "abd"]


class PunctuatedLM(TypedWordLM):
    chars = [" ", ",", "a", "b", "c", "d"]


def test_after_a_comma_or_a_number_the_next_word_comes_after_a_space():
    lm = PunctuatedLM()
    vocab = {"chars": lm.chars, "words": T.Lexicon(lm.words)}
    s = T.suggest(lm, vocab, "ab,")
    # It proposed letters glued to the comma ("Yes,e"), and a click wrote them so.
    assert [w for w, _ in s.completions] == ["ab", "abc", "abd"] and s.gap == " " and s.partial == ""
    assert [w for w, _ in s.next_words] == ["ab", "abc", "abd"]
    assert [T.needs_gap(t) for t in ("yes,", "the end.", "x 42", "i said \U0001F600", '"yes."', "(", "well-",
                                     'he said "', "", "the ", "the", "don'")] == [
        True, True, True, True, True, False, False, False, False, False, False, False]
    assert T.suggest(lm, vocab, "ab, ").gap == "" and T.suggest(lm, vocab, "ab").gap == ""


def test_a_word_typed_with_characters_the_model_does_not_know_gets_no_suggestions():
    # "the Straß" read as "the stra": a click on "strange" replaced the person's word.
    lm = PunctuatedLM()
    vocab = {"chars": lm.chars, "words": T.Lexicon(lm.words)}
    for typed in ("abß", "ab ß", "ab 东京", "äb"):
        s = T.suggest(lm, vocab, typed)
        assert s.completions == s.next_words == [] and s.next_after == "", typed
        assert s.unknown
    assert T.suggest(lm, vocab, "ab ß ").next_words or T.suggest(lm, vocab, "ab ß ").completions  # a space: on again


def test_a_continuation_that_finishes_a_word_is_shown_with_it():
    assert T.in_context("café au lait", "her hitherto") == "…laither hitherto"
    assert T.in_context("café au lait", " and so") == " and so"
    assert T.in_context("the end.", "the next") == "the next"
    assert T.in_context("", "the next") == "the next"


def test_a_continuation_has_no_hard_line_breaks_but_keeps_paragraphs():
    # The books wrap lines at ~70 characters; a continuation shown in the page's box is not wrapped there.
    vocab = {"chars": ScriptLM.chars}
    assert T.generate(ScriptLM(), vocab, "", n_words=6, seed=0) == "ab ab ab\n\nab ab b"


@pytest.mark.parametrize("prompt", ["", "a", "the cat sat on the m" * 50, "\U0001F600\U0001F600"])
def test_suggest_handles_any_prompt(tiny_text_model, monkeypatch, prompt):
    _, _, models = tiny_text_model
    monkeypatch.setenv("MODELS_DIR", str(models))
    lm, vocab, _ = T.load()
    s = T.suggest(lm, vocab, prompt)
    # Some completions, or the typed word is a word and the likeliest ("a"), and the next words follow it.
    assert 1 <= len(s.completions) <= 3 or s.next_after == s.partial != ""
    assert all(0 < p <= 1 for _, p in s.completions + s.next_words)
    assert all(w.startswith(s.partial) for w, _ in s.completions)
    assert all(w in vocab["words"] for w, _ in s.completions + s.next_words)
    out = T.generate(lm, vocab, prompt, n_words=4, temperature=0.5, seed=0)
    assert isinstance(out, str) and len(out.split()) <= 5


def test_missing_vocabulary_is_a_clear_error(tiny_text_model, monkeypatch, tmp_path):
    _, _, models = tiny_text_model
    monkeypatch.setenv("MODELS_DIR", str(tmp_path))
    core.atomic_copy(models / "text.keras", tmp_path / "text.keras")
    with pytest.raises(core.ModelUnavailable, match="vocab"):
        T.load()


def test_corpus_missing_offline(tmp_path, monkeypatch):
    import keras

    monkeypatch.setattr(keras.utils, "get_file", lambda *a, **k: (_ for _ in ()).throw(OSError("offline")))
    with pytest.raises(core.DataUnavailable, match="nietzsche.txt"):
        T.load_corpus(None, tmp_path)
    (tmp_path / "text").mkdir()
    (tmp_path / "text" / "nietzsche.txt").write_text("\ufeffHello")
    assert T.load_corpus(None, tmp_path) == "Hello"


def test_only_real_words_are_suggested(tiny_text_model, monkeypatch):
    _, _, models = tiny_text_model
    monkeypatch.setenv("MODELS_DIR", str(models))
    lm, vocab, _ = T.load()
    free = T.beam_words(lm, T.encode("the ca", vocab)[0], "ca", 10, beam=16)
    assert any(w not in vocab["words"] for w, _ in free)  # the bare model spells non-words too
    s = T.suggest(lm, vocab, "the ca")
    assert [w for w, _ in s.completions] == ["cat"]
    assert T.suggest(lm, vocab, "the cg").completions == []  # no word starts so


def test_build_words():
    assert T.build_words("the cat's 'quoted' words, 42 times--and don't") == [
        "and", "cat's", "don't", "quoted", "the", "times", "words"]
    lexicon = T.Lexicon(["cat", "car"])
    assert "cat" in lexicon and "ca" not in lexicon and "ca" in lexicon.prefixes and len(lexicon) == 2


def _second_model(run_dir, tmp_path):
    """Another network on the same vocabulary: the tiny model with its weights shaken."""
    model = core.load_model(run_dir / "model.keras")
    rng = np.random.default_rng(0)
    model.set_weights([w + rng.normal(0, 0.3, w.shape).astype(w.dtype) for w in model.get_weights()])
    folder = tmp_path / "other"
    folder.mkdir()
    core.save_model(model, folder / "model.keras")
    (folder / "model.vocab.json").write_text((run_dir / "model.vocab.json").read_text())
    return folder / "model.keras"


def test_an_ensemble_averages_its_networks_and_steps_like_its_full_model(tiny_text_model, tmp_path):
    run, _, _ = tiny_text_model
    a, b = core.load_model(run.dir / "model.keras"), core.load_model(_second_model(run.dir, tmp_path))
    vocab = core.read_json(run.dir / "model.vocab.json")
    both = T.ensemble([a, b], len(vocab["chars"]))
    ids, _ = T.encode("the cat sat on the m", vocab)
    full = both.predict_on_batch(ids[None])[0]
    mean = (a.predict_on_batch(ids[None])[0] + b.predict_on_batch(ids[None])[0]) / 2
    np.testing.assert_allclose(full, mean, atol=1e-5)
    lm = T.KerasLM(both, vocab)
    states, probs = lm.start(ids[:10])
    np.testing.assert_allclose(probs[0], full[9], atol=1e-5)
    for t in range(10, len(ids)):
        states, probs = lm.advance(states, np.array([0]), ids[t:t + 1])
        np.testing.assert_allclose(probs[0], full[t], atol=1e-5)


@pytest.fixture
def two_networks(tiny_text_model, tmp_path, monkeypatch):
    """Two networks on one vocabulary, a corpus file, and empty run and model stores."""
    run, _, _ = tiny_text_model
    monkeypatch.setenv("RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("MODELS_DIR", str(tmp_path / "models"))
    corpus = tmp_path / "tiny.txt"
    corpus.write_text(TINY)
    return [run.dir / "model.keras", _second_model(run.dir, tmp_path)], corpus


def test_an_ensemble_run_is_scored_and_gated_like_a_trained_one(two_networks):
    paths, corpus = two_networks
    folder = T.compose(paths, window=12, corpus=corpus, promote="always")
    card = core.read_json(folder / "card.json")
    assert card["settings"]["networks"] == 2 and card["score"]["name"] == "bits_per_char"
    assert {"bits_per_char", "next_word_top3", "ngram"} <= card["test"].keys()
    lm, vocab, active = T.load()  # promoted: the page's loader reads it, words and all
    assert active["run"] == folder.name and vocab["words"] is not None
    assert T.suggest(lm, vocab, "the cat sat on the m").completions
    T.main(["evaluate", "--corpus", str(corpus)])  # the command line reads the ensemble's card too
    # An ensemble cannot be fine-tuned: the form says so, and a job started anyway fails in words.
    errors = runs.field_errors("text", {"epochs": 1, "init_from": str(folder / "model.keras")})
    assert "cannot be fine-tuned" in errors["init_from"]
    with pytest.raises(core.InvalidSettings, match="not a model of this architecture"):
        warm_start(T.build_model(T.Settings(units=32, embed=8), len(vocab["chars"])), str(folder / "model.keras"))


def test_an_ensemble_needs_one_vocabulary(tiny_text_model, tmp_path):
    run, _, _ = tiny_text_model
    other = _second_model(run.dir, tmp_path)
    (other.parent / "model.vocab.json").write_text('{"chars": ["a", "b"], "lowercase": true}')
    with pytest.raises(core.InvalidSettings, match="one vocabulary"):
        T.compose([run.dir / "model.keras", other], corpus=None)


def test_an_ensemble_run_that_fails_says_why(two_networks, tmp_path, monkeypatch):
    paths, corpus = two_networks

    def broken(*args, **kwargs):
        raise ValueError("boom")

    monkeypatch.setattr(T, "evaluate", broken)
    with pytest.raises(ValueError, match="boom"):
        T.compose(paths, window=12, corpus=corpus)
    (failed,) = runs.list_runs("text")
    assert failed.state == "failed" and failed.status()["error"] == "ValueError: boom"
    assert not (tmp_path / "models").exists() or core.active_card("text") is None  # nothing promoted
