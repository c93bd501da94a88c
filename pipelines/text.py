"""Text: a character-level LSTM that completes the current word and proposes next words.

    python -m pipelines.text train [--corpus FILE | --data-dir DIR] [--arch default|baseline] [--promote always]
    python -m pipelines.text evaluate [--corpus FILE] [--model PATH]
    python -m pipelines.text complete "the free spi" [--words 8 --temperature 0.6]
    python -m pipelines.text ensemble runs/text/A/model.keras runs/text/B/model.keras [--window 40] [--promote ...]
    python -m pipelines.text models | rollback [VERSION] [--name text-sherlock]

Corpus: --corpus, else text/nietzsche.txt (or nietzsche.txt) in --data-dir / $DATA_DIR, else
the classic Nietzsche download. The text is lowercased; windows (40 characters, step 3 by
default: --window, --step) predict the next character; the last 10% is held out. Ids go through tf.data, never one-hot
copies of the corpus. The model is Embedding -> LSTM -> Dense softmax; the baseline is the seed
(one-hot input through a frozen identity embedding, LSTM(128), RMSprop, last character only),
the default predicts the next character at every position of the window.
A Witten-Bell character n-gram fitted on the same training text is the yardstick.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import unicodedata
from collections import Counter, defaultdict
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from pipelines import core

TASK = "text"
CORPUS_URL = "https://s3.amazonaws.com/text-datasets/nietzsche.txt"
# Typographic characters people type that the books spell in ASCII.
REPLACEMENTS = {"\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"', "\u2014": "--", "\u2013": "-",
                "\t": " ", "\r": "", "\u00a0": " ", "\u2026": "..."}


@dataclass
class Settings:
    arch: str = "default"  # "default" or "baseline" (the seed)
    window: int = 40
    step: int = 3
    epochs: int = 4
    batch_size: int = 128
    learning_rate: float = 3e-3
    units: int = 256
    embed: int = 48
    dropout: float = 0.25  # on the LSTM's inputs and outputs: the default overfits 600k chars after ~4 epochs
    holdout: float = 0.1
    data_fraction: float = 1.0
    seed: int = 0
    init_from: str = ""  # a .keras model to start from (fine-tuning) instead of random weights

    def __post_init__(self):
        core.check_settings(self, window=core.whole(2, 1000), step=core.whole(1, 100), units=core.whole(1, 4096),
                            embed=core.whole(0, 1024), dropout=core.number(0, 1, low_open=False, high_open=True),
                            holdout=core.number(0, 0.5, high_open=True))

    @classmethod
    def baseline(cls) -> Settings:
        return cls(arch="baseline", epochs=7, learning_rate=0.01, units=128, embed=0, dropout=0.0)


# ---------------------------------------------------------------- data


def load_corpus(corpus=None, data_dir=None) -> str:
    """The raw corpus text (not yet lowercased)."""
    candidates = [Path(corpus)] if corpus else []
    if (directory := core.data_dir(data_dir)) is not None:
        candidates += [directory / "text" / "nietzsche.txt", directory / "nietzsche.txt"]
    for path in candidates:
        if path.is_file():
            raw = path.read_bytes()
            return core.decode_text(raw) or raw.decode("utf-8", errors="replace")  # check_corpus refuses the latter
    if corpus:
        raise core.DataUnavailable(f"Corpus file {corpus} not found.")
    try:
        import keras

        return Path(keras.utils.get_file("nietzsche.txt", origin=CORPUS_URL)).read_text(encoding="utf-8")
    except Exception as exc:
        raise core.DataUnavailable(
            "No corpus: pass --corpus FILE, or put text/nietzsche.txt in $DATA_DIR (or --data-dir), "
            f"or go online so {CORPUS_URL} can be downloaded."
        ) from exc


def normalize(text: str) -> str:
    for old, new in REPLACEMENTS.items():
        text = text.replace(old, new)
    return text.lower()


def build_vocab(text: str) -> dict:
    return {"chars": sorted(set(text)), "lowercase": True}


def build_words(text: str) -> list[str]:
    """The words of a (normalized) training text: suggestions are only ever these real words."""
    return sorted({w.strip("'") for w in re.findall(r"[^\W\d_']+(?:'[^\W\d_]+)*", text)} - {""})


def stand_in(c: str, index: dict) -> str:
    """What the model reads for a character it does not know: its letter without the accent
    ("ü" -> "u", so "über" is read as "uber", not "ber"), or "" (left out) when there is none."""
    base = "".join(b for b in unicodedata.normalize("NFKD", c) if not unicodedata.combining(b))
    return base if base and base != c and all(b in index for b in base) else ""


def encode(text: str, vocab: dict) -> tuple[np.ndarray, dict]:
    """Ids of what the model reads, and the characters it does not know: {character: stand-in}
    ("" for the ones left out)."""
    index = {c: i for i, c in enumerate(vocab["chars"])}
    text = normalize(text)
    unknown = {c: stand_in(c, index) for c in sorted(set(text) - index.keys())}
    ids = [index[b] for c in text for b in (unknown[c] if c in unknown else c)]
    return np.array(ids, np.int32), unknown


def describe_unknown(unknown: dict) -> str:
    """'ü' read as 'u', '😀' left out."""
    return ", ".join(f"{c!r} read as {b!r}" if b else f"{c!r} left out" for c, b in unknown.items())


def split(ids: np.ndarray, holdout: float):
    cut = int(len(ids) * (1 - holdout))
    return ids[:cut], ids[cut:]


def window_starts(n: int, window: int, step: int) -> np.ndarray:
    """Start of every window whose next character exists."""
    return np.arange(0, max(n - window, 0), step)


def make_dataset(ids: np.ndarray, settings: Settings, shuffle: bool):
    """(window ids, target) pairs made on the fly from the id array: memory stays flat."""
    import tensorflow as tf

    w = settings.window
    starts = window_starts(len(ids), w, settings.step)
    corpus = tf.constant(ids, tf.int32)
    ds = tf.data.Dataset.from_tensor_slices(starts)
    if shuffle:
        ds = ds.shuffle(len(starts), seed=settings.seed, reshuffle_each_iteration=True)
    if settings.arch == "baseline":
        pair = lambda s: (corpus[s:s + w], corpus[s + w])  # noqa: E731
    else:
        pair = lambda s: (corpus[s:s + w], corpus[s + 1:s + w + 1])  # noqa: E731
    return ds.map(pair, num_parallel_calls=tf.data.AUTOTUNE).batch(settings.batch_size).prefetch(tf.data.AUTOTUNE)


# ---------------------------------------------------------------- model


def build_model(settings: Settings, vocab_size: int):
    import keras
    from keras import layers

    inputs = keras.Input((None,), dtype="int32")
    if settings.arch == "baseline":
        # One-hot on the fly: a frozen identity embedding is exactly a one-hot encoder.
        x = layers.Embedding(vocab_size, vocab_size, embeddings_initializer="identity", trainable=False,
                             name="embed")(inputs)
        x = layers.LSTM(settings.units, name="lstm")(x)
    elif settings.arch == "default":
        x = layers.Embedding(vocab_size, settings.embed, name="embed")(inputs)
        x = layers.LSTM(settings.units, return_sequences=True, dropout=settings.dropout, name="lstm")(x)
        x = layers.Dropout(settings.dropout)(x)
    else:
        raise ValueError(f"unknown arch {settings.arch!r}: use 'default' or 'baseline'")
    outputs = layers.Dense(vocab_size, activation="softmax", name="head")(x)
    return keras.Model(inputs, outputs, name=f"text_{settings.arch}")


def compile_model(model, settings: Settings, total_steps: int):
    import keras

    if settings.arch == "baseline":
        optimizer = keras.optimizers.RMSprop(settings.learning_rate)
    else:
        lr = keras.optimizers.schedules.CosineDecay(settings.learning_rate, max(total_steps, 1), alpha=0.05)
        optimizer = keras.optimizers.Adam(lr, clipnorm=1.0)
    # Sparse categorical cross-entropy is the seed's categorical cross-entropy without one-hot targets.
    model.compile(optimizer, "sparse_categorical_crossentropy", metrics=["accuracy"])


# ---------------------------------------------------------------- language models for search


def members(model) -> list[tuple]:
    """(embedding, LSTM, head) of each network in a model: one for a trained model, several for an ensemble."""
    names = {layer.name for layer in model.layers}
    if "lstm" in names:
        return [tuple(model.get_layer(n) for n in ("embed", "lstm", "head"))]
    count = sum(1 for n in names if n.startswith("lstm_"))
    if not count:
        raise core.ModelUnavailable("This text model has no LSTM layer; retrain it.")
    return [tuple(model.get_layer(f"{n}_{i}") for n in ("embed", "lstm", "head")) for i in range(count)]


def ensemble(models: list, vocab_size: int):
    """One model whose next-character probabilities are the average of trained models' (same vocabulary,
    default architecture): each network's embedding, LSTM and head copied under numbered names."""
    import keras
    from keras import layers

    parts = [m for model in models for m in members(model)]
    if len(parts) < 2:
        raise ValueError("an ensemble needs at least two networks")
    inputs = keras.Input((None,), dtype="int32")
    outputs = []
    for i, (embed, lstm, head) in enumerate(parts):
        if embed.input_dim != vocab_size or head.units != vocab_size:
            raise ValueError("the models of an ensemble must share one vocabulary")
        x = layers.Embedding(vocab_size, embed.output_dim, name=f"embed_{i}")(inputs)
        x = layers.LSTM(lstm.units, return_sequences=True, name=f"lstm_{i}")(x)
        outputs.append(layers.Dense(vocab_size, activation="softmax", name=f"head_{i}")(x))
    model = keras.Model(inputs, layers.Average(name="average")(outputs), name="text_ensemble")
    for i, layers_i in enumerate(parts):
        for n, source in zip(("embed", "lstm", "head"), layers_i):
            model.get_layer(f"{n}_{i}").set_weights(source.get_weights())
    return model


def reading_start(n: int, window: int) -> int:
    """Where the model starts reading a text of `n` characters: `window` to 2 x `window` - 1 characters
    back, at a multiple of `window`. The start stays put while a person types on, so each key reads
    one character on from the reading before it (KerasLM remembers readings); the page and the
    benchmark both read this way."""
    return max(0, (n - window) // window * window)


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))  # the logistic function, without overflow for large |x|


def softmax(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


class KerasLM:
    """Step-by-step next-character probabilities from a trained model (or an ensemble), for beam search.

    The weights of each network (embedding, LSTM, head) are taken from the Keras model once and the
    LSTM is stepped in NumPy from its (h, c) state, one character at a time for every beam at once:
    a step is a few small matrix products, and a call into TensorFlow for one cost more in its own
    overhead than in arithmetic (2 ms of CPU against 0.5 ms for one beam; the tests check that both
    give the same probabilities). An ensemble averages its networks' probabilities and keeps their
    states side by side. Readings of prompts are remembered (`memo`, shared by all sessions), so a
    key typed reads one character on from the reading of the text before it, not the whole window.
    """

    TYPED_AHEAD = 24  # characters a remembered reading may be behind the text and still be read on

    def __init__(self, model, vocab: dict, window: int = 40):
        self.chars, self.window = vocab["chars"], window
        self.nets = []
        for embed, lstm, head in members(model):
            config = lstm.get_config()
            if (config.get("activation"), config.get("recurrent_activation")) != ("tanh", "sigmoid"):
                raise core.ModelUnavailable("This text model's LSTM has unusual activations; retrain it.")
            kernel, recurrent, bias = lstm.get_weights()
            head_kernel, head_bias = head.get_weights()
            # The embedding, the input weights and the bias folded into one table: a character's input to the gates.
            self.nets.append((embed.get_weights()[0] @ kernel + bias, recurrent, head_kernel, head_bias))
        self._zeros = np.zeros((1, sum(recurrent.shape[0] for _, recurrent, _, _ in self.nets)), np.float32)
        self.memo = core.Memo(1024)  # prompt readings (~8 KB each for two 512-unit networks) and word lists

    def _step(self, ids: np.ndarray, h: np.ndarray, c: np.ndarray):
        """One character for each row: Keras' LSTM cell (gates i, f, g, o), then the head's softmax."""
        probs, hs, cs, at = 0.0, [], [], 0
        for gates_in, recurrent, head_kernel, head_bias in self.nets:
            units = recurrent.shape[0]
            z = gates_in[ids] + h[:, at:at + units] @ recurrent
            # Slices, not np.split, and one sigmoid for the input and forget gates: fewer NumPy calls, whose own
            # overhead is about a third of a step of 8 beams (measured: a few percent saved).
            i_f = sigmoid(z[:, :2 * units])
            c_net = i_f[:, units:] * c[:, at:at + units] + i_f[:, :units] * np.tanh(z[:, 2 * units:3 * units])
            h_net = sigmoid(z[:, 3 * units:]) * np.tanh(c_net)
            probs = probs + softmax(h_net @ head_kernel + head_bias)
            hs.append(h_net), cs.append(c_net)
            at += units
        return probs / len(self.nets), np.concatenate(hs, 1), np.concatenate(cs, 1)

    def reading(self, ids: np.ndarray) -> np.ndarray:
        """The characters of a prompt that the model reads (from `reading_start`; a space for none)."""
        ids = np.asarray(ids, np.int32)
        return ids[reading_start(len(ids), self.window):] if len(ids) else np.array([self.chars.index(" ")], np.int32)

    def start(self, ids: np.ndarray):
        """States and next-character probabilities after a prompt, read on from the longest remembered
        reading of its beginning (the text before the last keys typed), else from the start."""
        ids = self.reading(ids)
        states, m = (self._zeros, self._zeros), 0
        for end in range(len(ids), max(len(ids) - self.TYPED_AHEAD, 0), -1):
            if (hit := self.memo.get(ids[:end].tobytes())) is not None:
                if end == len(ids):
                    return hit
                states, m = hit[0], end
                break
        return self.memo.put(ids.tobytes(), self.extend(states, ids[m:]))

    def extend(self, states, ids: np.ndarray):
        """Read `ids` (at least one) on from one state (a single row)."""
        h, c = states
        for i in np.asarray(ids, np.int32):
            probs, h, c = self._step(np.array([i]), h, c)
        return (h, c), probs

    def advance(self, states, rows: np.ndarray, ids: np.ndarray):
        """One character for each beam: `rows` picks the beam each one goes on from."""
        probs, h, c = self._step(np.asarray(ids, np.int32), states[0][rows], states[1][rows])
        return (h, c), probs


class NgramLM:
    """Interpolated Witten-Bell character n-gram: the baseline the LSTM must beat."""

    def __init__(self, ids: np.ndarray, chars: list[str], order: int = 6):
        self.order, self.v, self.chars = order, len(chars), chars
        self.counts: dict[tuple, Counter] = defaultdict(Counter)
        seq = ids.tolist()
        for k in range(order):  # context length k
            for i in range(k, len(seq)):
                self.counts[tuple(seq[i - k:i])][seq[i]] += 1
        self._cache: dict[tuple, np.ndarray] = {}

    def probs(self, context) -> np.ndarray:
        context = tuple(context[-(self.order - 1):]) if self.order > 1 else ()
        if context in self._cache:
            return self._cache[context]
        p = np.full(self.v, 1.0 / self.v)
        for k in range(0, len(context) + 1):
            counter = self.counts.get(context[len(context) - k:])
            if not counter:
                break
            total, types = sum(counter.values()), len(counter)
            dense = np.zeros(self.v)
            dense[list(counter)] = list(counter.values())
            p = (dense + types * p) / (total + types)
        if len(self._cache) < 200_000:
            self._cache[context] = p
        return p

    def start(self, ids: np.ndarray):
        states = [tuple(ids[-(self.order - 1):].tolist())]
        return states, np.stack([self.probs(s) for s in states])

    def extend(self, states, ids: np.ndarray):
        """Read `ids` on from one state (a single row), as KerasLM.extend."""
        state = (states[0] + tuple(int(i) for i in ids))[-(self.order - 1):]
        return [state], self.probs(state)[None]

    def advance(self, states, rows: np.ndarray, ids: np.ndarray):
        states = [(states[r] + (int(i),))[-(self.order - 1):] for r, i in zip(rows, ids)]
        return states, np.stack([self.probs(s) for s in states])


# ---------------------------------------------------------------- search


def is_word_char(c: str) -> bool:
    return c.isalpha() or c == "'"


def trailing_word(text: str) -> str:
    match = re.search(r"[^\W\d_']*'?[^\W\d_]*$", text)
    return match.group(0) if match else ""


class Lexicon:
    """The real words of a corpus and all their prefixes: the beam search only spells these."""

    def __init__(self, words):
        self.words = frozenset(words)
        self.prefixes = frozenset(w[:i] for w in self.words for i in range(len(w) + 1))

    def __contains__(self, word: str) -> bool:
        return word in self.words

    def __len__(self) -> int:
        return len(self.words)


def beam_words(lm, ids: np.ndarray, prefix: str = "", k: int = 3, beam: int = 8, max_len: int = 18,
               lexicon: Lexicon | None = None):
    """Top-k words that continue `ids`, each finished by a word boundary; (word, probability).

    `prefix` is the part of the current word already typed (it is in `ids` too).
    A word's probability is P(its remaining letters, then a boundary | text). With a `lexicon`
    only its words are spelled (a typed prefix that starts no word gets none).
    """
    chars = lm.chars
    word_mask = np.array([is_word_char(c) for c in chars])
    is_letter = word_mask.tolist()
    states, probs = lm.start(ids)
    beams = [(prefix, 0.0)] if lexicon is None or prefix in lexicon.prefixes else []
    done: dict[str, float] = {}
    for _ in range(max_len):
        logp = np.log(np.maximum(probs, 1e-12))
        # Every beam's letters, likeliest first, in one call; Python floats and ints below (cheaper one at a time).
        orders = np.argsort(np.where(word_mask, logp, -np.inf), axis=1)[:, ::-1].tolist()
        ends = np.log(np.maximum(probs[:, ~word_mask].sum(axis=1, dtype=np.float64), 1e-12)).tolist()
        logp, cands = logp.tolist(), []
        for b, (word, lp) in enumerate(beams):
            if word and (lexicon is None or word in lexicon):  # the word may end here: any boundary character
                done[word] = np.logaddexp(done.get(word, -np.inf), lp + ends[b])
            for cid in orders[b]:
                if not is_letter[cid] or len(cands) >= (b + 1) * beam:
                    break
                if lexicon is None or word + chars[cid] in lexicon.prefixes:
                    cands.append((lp + logp[b][cid], b, cid))
        cands.sort(reverse=True)
        cands = cands[:beam]
        best = sorted(done.values(), reverse=True)
        if not cands or (len(best) >= k and best[k - 1] >= cands[0][0]):
            break
        rows = np.array([b for _, b, _ in cands])
        states, probs = lm.advance(states, rows, np.array([c for _, _, c in cands]))
        beams = [(beams[b][0] + chars[c], lp) for lp, b, c in cands]
    ranked = sorted(done.items(), key=lambda kv: -kv[1])[:k]
    return [(w, float(np.exp(lp))) for w, lp in ranked]


@dataclass
class Suggestions:
    completions: list  # (word, probability): finish the current word (or the next word after a space)
    next_words: list  # (word, probability): the word after `next_after`
    next_after: str  # the likeliest word here, the typed one if it is already a word ("then"), or ""
    partial: str  # the part of the current word already typed
    unknown: dict  # characters the model does not know: {character: what it reads instead, "" if nothing}
    gap: str = ""  # put before a suggested word: " " after "yes," or "42", where the next word needs a space


def likely_words(lm, ids: np.ndarray, prefix: str, k: int, words: Lexicon | None) -> list:
    """`beam_words`, remembered by a model that has a memo: a rerun with the same text costs nothing,
    and neither do the next words after the same finished word while a person types it out."""
    memo = getattr(lm, "memo", None)
    if memo is None:
        return beam_words(lm, ids, prefix, k, lexicon=words)
    key = ("words", lm.reading(ids).tobytes(), prefix, k)
    found = memo.get(key)
    return found if found is not None else memo.put(key, beam_words(lm, ids, prefix, k, lexicon=words))


OPENERS = "([{<\"'/-_@#$"  # a word follows these directly: "(the", "well-known"


def needs_gap(text: str) -> bool:
    """Does the next word need a space first? After "yes," "the end." "42" or an emoji, yes; after a space,
    in a word, after "(" or "well-", no. A quote opens after a space and closes after anything else."""
    last = text[-1:] if not trailing_word(text) else ""
    if not last or last.isspace():
        return False
    if last in "\"'":
        return not (len(text) == 1 or text[-2].isspace() or text[-2] in OPENERS)
    return last not in OPENERS


def suggest(lm, vocab: dict, text: str, k: int = 3) -> Suggestions:
    """Words that complete the one being typed, and the words after the likeliest. A typed word that is
    already a word ("then") is not its own completion; when it is the likeliest, the next words follow it.
    A word typed with characters the model does not know ("Straß", "东京") gets none: the model cannot spell
    it, and a suggestion would replace it with another word. After "yes," the words are read, and put, after
    a space (`gap`): they were letters glued to the comma ("Yes,e")."""
    ids, unknown = encode(text, vocab)
    clean = "".join(vocab["chars"][i] for i in ids)
    partial = trailing_word(clean)
    if partial != trailing_word(normalize(text)):
        return Suggestions([], [], "", partial, unknown)
    gap = " " if needs_gap(normalize(text)) else ""
    if gap and clean and not clean[-1].isspace():
        ids, _ = encode(clean + gap, vocab)  # the model reads the space the person has not typed yet
    words = vocab.get("words")
    ranked = likely_words(lm, ids, partial, k + 1, words)
    completions = [(w, p) for w, p in ranked if w != partial][:k]
    next_after, next_words = (ranked[0][0] if ranked else ""), []
    if next_after:
        more, _ = encode(next_after[len(partial):] + " ", vocab)
        next_words = likely_words(lm, np.concatenate([ids, more]), "", k, words)
    return Suggestions(completions, next_words, next_after, partial, unknown, gap)


def in_context(text: str, continuation: str) -> str:
    """A continuation as it reads after the text: one that finishes the word being typed is shown with that
    word ("…lait" + "her hitherto" reads "…laither hitherto", not "her hitherto", which looks like a new word)."""
    partial = trailing_word(text)
    if partial and continuation[:1].isalpha():
        return "…" + partial + continuation
    return continuation


def generate(lm, vocab: dict, text: str, n_words: int = 10, temperature: float = 0.7, seed=None) -> str:
    """Sample a continuation of about `n_words` words at a temperature."""
    rng = np.random.default_rng(seed)
    ids, _ = encode(text, vocab)
    states, probs = lm.start(ids)
    out, words = [], 0
    for _ in range(n_words * 15):
        logits = np.log(np.maximum(probs[0], 1e-12)) / max(temperature, 1e-3)
        p = np.exp(logits - logits.max())
        cid = int(rng.choice(len(p), p=p / p.sum()))
        char = vocab["chars"][cid]
        if not is_word_char(char) and out and is_word_char(out[-1]):
            words += 1
            if words >= n_words:
                break
        out.append(char)
        states, probs = lm.advance(states, np.array([0]), np.array([cid]))
    # The books' lines are wrapped at ~70 characters: a single line break is a space, a blank line a paragraph.
    return re.sub(r"(?<!\n)\n(?!\n)", " ", "".join(out))


# ---------------------------------------------------------------- train / evaluate


def prepare(text: str, settings: Settings, vocab: dict | None = None):
    """Normalized ids of the training and held-out parts, and the vocabulary."""
    text = normalize(text)
    text = text[: max(settings.window * 4, int(len(text) * settings.data_fraction))]
    vocab = vocab or build_vocab(text)
    ids, _ = encode(text, vocab)
    train_ids, held_ids = split(ids, settings.holdout)
    return train_ids, held_ids, vocab


def beside(model_file, extra: str, name: str = TASK):
    """A model file's JSON companion (`vocab.json`, `words.json`): a registry version's `<extra>`,
    or a run folder's `model.<extra>`; None when it has none."""
    path = Path(model_file)
    return core.read_json(core.extra_path(name, extra, path)) or core.read_json(path.with_name(f"model.{extra}"))


def train(settings: Settings, run, corpus=None, data_dir=None, promote: str = "never", text: str | None = None,
          name: str = TASK):
    import keras

    from pipelines.tracker import write_text_mistakes
    from pipelines.training import fit_and_save, warm_start

    corpus_name = Path(corpus).stem if corpus else "nietzsche" if text is None else "given text"
    text = text if text is not None else load_corpus(corpus, data_dir)
    keras.utils.set_random_seed(settings.seed)
    # Fine-tuning keeps the starting model's vocabulary: its embedding and output rows are those characters.
    start = Path(settings.init_from) if settings.init_from else None  # a registry version or a run folder
    start_vocab = start and beside(start, "vocab.json", name)
    train_ids, held_ids, vocab = prepare(text, settings, start_vocab)
    words = build_words("".join(vocab["chars"][i] for i in train_ids))
    fit_ids, val_ids = split(train_ids, 0.05)  # validation inside the training part
    counts = np.bincount(train_ids, minlength=len(vocab["chars"]))
    top = np.argsort(counts)[::-1][:30]
    core.write_data_view(run.dir, {repr(vocab["chars"][i])[1:-1]: counts[i] for i in top})
    model = warm_start(build_model(settings, len(vocab["chars"])), settings.init_from)
    steps = len(window_starts(len(fit_ids), settings.window, settings.step)) // settings.batch_size + 1
    compile_model(model, settings, settings.epochs * steps)
    return fit_and_save(
        run, model, make_dataset(fit_ids, settings, shuffle=True), make_dataset(val_ids, settings, shuffle=False),
        settings=settings, epochs=settings.epochs, batch_size=settings.batch_size,
        evaluate=lambda m: evaluate(m, vocab, train_ids, held_ids, settings.window, words=Lexicon(words)),
        score_key="bits_per_char", higher_is_better=False,
        data_hash=core.sha256_bytes(text.encode()), extras={"vocab.json": vocab, "words.json": {"words": words}},
        promote=promote,
        card_extra={"corpus": corpus_name, "corpus_chars": len(text),
                    "vocab_size": len(vocab["chars"])}, name=name,
        benchmark=benchmark_for(name, text, corpus_name, corpus, data_dir),
        inspect=lambda m, folder: write_text_mistakes(folder, m, vocab, held_ids, settings.window),
    )


def compose(model_paths: list, window: int = 40, corpus=None, data_dir=None, promote: str = "never") -> Path:
    """A run folder holding the ensemble of trained text models (run folders' or registry versions'
    model.keras, one vocabulary), evaluated, scored and gated like a trained run."""
    from pipelines import runs
    from pipelines.training import finish_run

    paths = [Path(p) for p in model_paths]
    vocabs = [beside(p, "vocab.json") for p in paths]
    if not vocabs[0] or any(v != vocabs[0] for v in vocabs):
        raise core.InvalidSettings("the models of an ensemble must share one vocabulary (a vocab.json beside each)")
    vocab = vocabs[0]
    text = load_corpus(corpus, data_dir)
    train_ids, held_ids, _ = prepare(text, Settings(window=window), vocab)
    words = build_words("".join(vocab["chars"][i] for i in train_ids))
    model = ensemble([core.load_model(p) for p in paths], len(vocab["chars"]))
    # What each network was trained with (its run's card), so the ensemble's card says how to make it again.
    trained = [(core.read_json(p.with_name(core.CARD_FILE), {}) or {}).get("settings", {}) for p in paths]
    settings = {"arch": "ensemble", "composed_from": [str(p) for p in paths], "window": window,
                "networks": len(members(model)),
                "members": [{k: v for k, v in t.items() if k in Settings.__dataclass_fields__} for t in trained]}
    run = runs.Run.create(TASK, settings)
    corpus_name = Path(corpus).stem if corpus else "nietzsche"
    with runs.running(run):  # the run store says how it ended, instead of a run left "queued" for ever
        core.save_model(model, run.dir / "model.keras")
        finish_run(run, model, settings,
                   lambda m: evaluate(m, vocab, train_ids, held_ids, window, words=Lexicon(words)), "bits_per_char",
                   higher_is_better=False, data_hash=core.sha256_bytes(text.encode()),
                   extras={"vocab.json": vocab, "words.json": {"words": words}}, promote=promote,
                   card_extra={"corpus": corpus_name, "corpus_chars": len(text), "vocab_size": len(vocab["chars"])},
                   benchmark=benchmark_for(TASK, text, corpus_name, corpus, data_dir))
    return run.dir


# ---------------------------------------------------------------- the fixed benchmark

BENCH_HOLDOUT, BENCH_WINDOW = 0.1, 40
UNKNOWN_BITS = -math.log2(1e-12)  # a character the model does not know: probability 1e-12, the floor of every score


def held_out_text(text: str, holdout: float = BENCH_HOLDOUT) -> str:
    """The last 10% of the whole normalized corpus: what the shipped model never trained on."""
    text = normalize(text)
    return text[int(len(text) * (1 - holdout)):]


def benchmark_bits(model, vocab: dict | None, held: str, window: int = BENCH_WINDOW, max_windows: int = 20_000) -> float:
    """Bits per character on `held` with the model's own vocabulary; each character it does not know
    counts as an error of UNKNOWN_BITS. Equals evaluate()'s bits_per_char when it knows them all."""
    if not vocab or "chars" not in vocab:
        raise core.ModelUnavailable("This text model has no vocabulary, so it cannot be scored.")
    index = {c: i for i, c in enumerate(vocab["chars"])}
    ids = np.array([index[c] for c in held if c in index], np.int32)
    unknown = 1 - len(ids) / max(len(held), 1)
    starts = window_starts(len(ids), window, 3)[:max_windows]
    if not len(starts):
        return UNKNOWN_BITS
    probs = last_char_probs(model, np.stack([ids[s:s + window] for s in starts]))
    p_true = np.maximum(probs[np.arange(len(starts)), ids[starts + window]], 1e-12)
    return float((1 - unknown) * -np.log2(p_true).mean() + unknown * UNKNOWN_BITS)


def benchmark_for(name: str, text: str, corpus_name: str, corpus=None, data_dir=None):
    """The `text` model is always compared on the held-out part of the shipped corpus (Nietzsche),
    whatever it was trained on; a named model (text-sherlock) on its own corpus's held-out part."""
    from pipelines.training import Benchmark, benchmark_id, log2_chance

    source = corpus_name
    if name == TASK and corpus is not None:
        try:
            text, source = load_corpus(None, data_dir), "nietzsche"
        except core.DataUnavailable:
            print("the shipped corpus is not at hand: this model is scored on its own held-out text, "
                  "so it has no common benchmark with the active text model", flush=True)
    held = held_out_text(text)
    return Benchmark(
        id=benchmark_id("text-heldout", held.encode()), name=f"the last 10% of {source} ({len(held):,} characters)",
        score_key="bits_per_char", higher_is_better=False,
        score=lambda model, vocab: benchmark_bits(model, vocab, held), chance=log2_chance(len(set(held))),
        note=f"characters the model does not know count as errors of {UNKNOWN_BITS:.1f} bits each",
        rescore_active=False,
    )


def last_char_probs(model, windows: np.ndarray, batch_size: int = 1024) -> np.ndarray:
    """Next-character probabilities after each full window (both architectures)."""
    out = []
    for i in range(0, len(windows), batch_size):
        p = model.predict_on_batch(windows[i:i + batch_size])
        out.append(p[:, -1] if p.ndim == 3 else p)
    return np.concatenate(out) if out else np.zeros((0, model.output_shape[-1]))


N_WORDS = 2000  # held-out word positions for next-word top-3: the card, `evaluate`, the bench and the page


def next_word_cases(held_ids: np.ndarray, vocab: dict, n: int = N_WORDS, window: int = 40, seed: int = 0):
    """(text before, true next word) at word starts in held-out text at least `window` characters in.
    The text before is all of it, as if the held-out text had been typed into the page: the model
    reads it from `reading_start`, as it reads what a person types."""
    text = "".join(vocab["chars"][i] for i in held_ids)
    starts = [m.start() for m in re.finditer(r"(?<= )[a-z']+", text) if m.start() >= window]
    rng = np.random.default_rng(seed)
    picks = sorted(rng.choice(len(starts), size=min(n, len(starts)), replace=False)) if starts else []
    return [(held_ids[:starts[i]], re.match(r"[a-z']+", text[starts[i]:]).group(0)) for i in picks]


def score_lm(lm, window_probs: np.ndarray, targets: np.ndarray, cases, words=None) -> dict:
    p_true = np.maximum(window_probs[np.arange(len(targets)), targets], 1e-12)
    # Next word as the page proposes it: top 3 real words after a space.
    hits = [word in [w for w, _ in beam_words(lm, ctx, "", 3, lexicon=words)] for ctx, word in cases]
    return {
        "bits_per_char": float(-np.log2(p_true).mean()),
        "next_char_top1": float((window_probs.argmax(1) == targets).mean()),
        "next_word_top3": float(np.mean(hits)) if hits else 0.0,
        "n_windows": int(len(targets)), "n_words": len(hits),
    }


def evaluate(model, vocab: dict, train_ids: np.ndarray, held_ids: np.ndarray, window: int = 40,
             max_windows: int = 20_000, n_words: int = N_WORDS, words=None) -> dict:
    """Held-out metrics of the model and of an n-gram fitted on the same training text.
    `words` (the training text's words) filters next-word guesses as the page does. Next words
    are guessed from `window` characters, as the page reads; bits and next characters from at most
    BENCH_WINDOW, so models trained on longer windows are scored like the others."""
    w = min(window, BENCH_WINDOW)
    starts = window_starts(len(held_ids), w, 3)[:max_windows]
    windows = np.stack([held_ids[s:s + w] for s in starts]) if len(starts) else np.zeros((0, w), np.int32)
    targets = held_ids[starts + w]
    cases = next_word_cases(held_ids, vocab, n_words, window)
    lm = KerasLM(model, vocab, window)
    report = score_lm(lm, last_char_probs(model, windows), targets, cases, words)
    ngram = NgramLM(train_ids, vocab["chars"])
    ngram_probs = np.stack([ngram.probs(w.tolist()) for w in windows]) if len(windows) else np.zeros((0, 1))
    report["ngram"] = score_lm(ngram, ngram_probs, targets, cases, words)
    report["ngram"]["order"] = ngram.order
    report["filtered_to_corpus_words"] = words is not None
    return report


def describe_score(test: dict) -> str:
    """The held-out figures in one sentence: the page and the README quote this."""
    return (f"Held-out text: {test['bits_per_char']:.3f} bits per character; the next word is among the 3 "
            f"proposed {test['next_word_top3']:.1%} of the time ({test['n_words']:,} held-out words; "
            f"character n-gram: {test['ngram']['bits_per_char']:.3f} bits, {test['ngram']['next_word_top3']:.1%}).")


def heldout_report(model_file, name: str = TASK, corpus=None, data_dir=None, filter_words: bool = True) -> dict:
    """`evaluate` of one model file with its own vocabulary, words and window, as its card was measured:
    the command line (the active model) and the bench (the active model and the one before) both call this."""
    path = Path(model_file)
    card = (core.read_json(path.with_name(core.CARD_FILE)) if path.name == core.MODEL_FILE else core.active_card(name))
    settings = reading_settings(card or {})
    vocab = beside(path, "vocab.json", name)
    train_ids, held_ids, _ = prepare(load_corpus(corpus, data_dir), settings, vocab)
    words = None
    if filter_words:
        saved = (beside(path, "words.json", name) or {}).get("words")
        words = Lexicon(saved or build_words("".join(vocab["chars"][i] for i in train_ids)))
    return evaluate(core.load_model(path), vocab, train_ids, held_ids, settings.window, words=words)


def reading_settings(card: dict) -> Settings:
    """How a model reads text (its window, the held-out share), from its card; the rest stays default,
    since an ensemble's card has no training settings of its own."""
    saved = card.get("settings") or {}
    return Settings(**{k: saved[k] for k in ("window", "holdout", "data_fraction") if k in saved})


def load(name: str = TASK):
    """(KerasLM, vocab, card) of an active text model (`text` or `text-<corpus>`)."""
    path = core.model_path(name)  # resolved once: the vocabulary comes from the same version
    model = core.load_model(path)
    vocab = core.read_json(core.extra_path(name, "vocab.json", path))
    if not vocab or "chars" not in vocab:
        raise core.ModelUnavailable(f"The vocabulary {name}.vocab.json is missing or unreadable; retrain the model.")
    words = (core.read_json(core.extra_path(name, "words.json", path)) or {}).get("words")
    vocab = {**vocab, "words": Lexicon(words) if words else None}
    card = core.active_card(name) or {}
    return KerasLM(model, vocab, card.get("settings", {}).get("window", 40)), vocab, card


# ---------------------------------------------------------------- command line


def main(argv=None):
    from pipelines import runs

    parser = argparse.ArgumentParser(prog="python -m pipelines.text", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train", help="train a model into a run folder")
    e = sub.add_parser("evaluate", help="print held-out metrics (and the n-gram's) as JSON")
    c = sub.add_parser("complete", help="suggest words and generate a continuation")
    n = sub.add_parser("ensemble", help="a run averaging trained models' next-character probabilities")
    n.add_argument("models", nargs="+", help="model.keras files (run folders or registry versions)")
    n.add_argument("--window", type=int, default=40, help="characters of context the page reads")
    n.add_argument("--corpus", help="a plain-text file")
    n.add_argument("--data-dir", help="folder with text/nietzsche.txt (default: $DATA_DIR)")
    n.add_argument("--promote", choices=("never", "always", "if-better"), default="never")
    for p in (t, e):
        p.add_argument("--corpus", help="a plain-text file")
        p.add_argument("--data-dir", help="folder with text/nietzsche.txt (default: $DATA_DIR)")
    for p in (e, c):
        p.add_argument("--name", default=TASK, help="model name in models/ (text, text-sherlock, ...)")
    e.add_argument("--no-filter", action="store_true", help="next words not limited to the corpus's words")
    c.add_argument("prompt")
    c.add_argument("--words", type=int, default=8)
    c.add_argument("--temperature", type=float, default=0.6)
    runs.add_train_flags(t, augment=False)
    t.add_argument("--units", type=int, help="LSTM units")
    t.add_argument("--dropout", type=float, help="dropout on the LSTM's inputs and outputs")
    t.add_argument("--window", type=int, help="characters per training window (the page reads as many)")
    t.add_argument("--step", type=int, help="characters between window starts")
    t.add_argument("--name", default=TASK, help="registry name to promote to, e.g. text-sherlock")
    runs.add_registry_commands(sub, name_flag=True)
    args = parser.parse_args(argv)

    if args.cmd in ("models", "rollback"):
        runs.registry_command(TASK, args)
        return
    if args.cmd == "ensemble":
        print(json.dumps({"run": str(compose(args.models, args.window, args.corpus, args.data_dir, args.promote))}))
        return
    if args.cmd == "complete":
        lm, vocab, _ = load(args.name)
        s = suggest(lm, vocab, args.prompt)
        print(json.dumps({"completions": s.completions, "next_words": s.next_words, "unknown": s.unknown,
                          "generated": generate(lm, vocab, args.prompt, args.words, args.temperature)}, indent=1))
        return
    if args.cmd == "evaluate":
        report = heldout_report(core.model_path(args.name), args.name, args.corpus, args.data_dir, not args.no_filter)
        print(json.dumps(report, indent=1))
        return
    settings = runs.settings_from_args(Settings, args)
    settings = replace(settings, **{k: getattr(args, k) for k in ("window", "step") if getattr(args, k) is not None})
    if args.corpus:
        runs.check_corpus(args.corpus)
    run, card = runs.train_from_args(TASK, settings, args, train, corpus=args.corpus, data_dir=args.data_dir,
                                     name=args.name)
    if card:
        print(json.dumps({"run": run.id, "bits_per_char": card["test"]["bits_per_char"],
                          "ngram_bits_per_char": card["test"]["ngram"]["bits_per_char"]}))


if __name__ == "__main__":
    core.run_cli(main)
