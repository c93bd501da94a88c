"""Digits beyond MNIST: the generated sets, calibration, the three outcomes and the splitting of
touching digits (synthetic data and fake models only)."""

import cv2
import numpy as np
import pytest
from conftest import canvas_with

from pipelines import digit_sets, digits


def rgba_of(canvas):
    out = np.zeros(canvas.shape + (4,), np.uint8)
    out[..., 3] = canvas
    return out


# ---------------------------------------------------------------- generators


def test_hershey_digits_are_balanced_reproducible_canvases():
    a, ya = digit_sets.hershey_digits(20, seed=3)
    b, yb = digit_sets.hershey_digits(20, seed=3)
    assert list(ya) == list(range(10)) * 2 and list(ya) == list(yb)
    assert all(x.shape == (digit_sets.H, digit_sets.W) and x.dtype == np.uint8 for x in a)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert all((x > 128).sum() > 100 for x in a)  # every canvas holds a visible digit


def test_hershey_numbers_touch_and_read_as_one_piece_without_splitting():
    canvases, texts = digit_sets.hershey_numbers(12, seed=1)
    assert all(2 <= len(t) <= 4 and t.isdigit() for t in texts)
    merged = [len(digits.segment(digits.ink(rgba_of(c)))) < len(t) for c, t in zip(canvases, texts)]
    assert np.mean(merged) > 0.5  # most of them touch: connected components alone cannot split them


def test_non_digits_cycle_through_the_kinds_and_go_through_the_page_preprocessing():
    canvases, kinds = digit_sets.non_digits(10, seed=2)
    assert kinds == list(digit_sets.NON_DIGIT_KINDS) * 2
    images = digits.non_digit_images(10, seed=2)
    assert len(images) >= 10 and images.shape[1:] == (28, 28) and images.dtype == np.uint8


def test_letters_that_look_like_digits_are_left_out():
    assert not set("OoIlZSsBgq") & set(digit_sets.LETTERS)


def test_canvas_extras_restroke_european_styles_and_non_digits():
    rng = np.random.default_rng(0)
    x = np.zeros((40, 28, 28), np.uint8)
    for img in x:
        cv2.line(img, (14, 5), (14 + int(rng.integers(-3, 4)), 22), 255, 2)
    y = np.array([1, 7] * 20, np.uint8)
    ex, ey = digits.canvas_extras(x, y, seed=0, n_restroke=10, n_european=4, n_other=5)
    assert ex.shape[1:] == (28, 28) and len(ex) == len(ey)
    assert (ey == digits.NOT_A_DIGIT).sum() >= 5 and (ey[10:18] == [7] * 4 + [1] * 4).all()


# ---------------------------------------------------------------- calibration


def softmax(z):
    e = np.exp(z - z.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def overconfident(n=4000, t_true=2.5, seed=0):
    """Probabilities whose labels were drawn at temperature `t_true`: they are too sure by that factor."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 3, (n, 10))
    truth = softmax(logits / t_true)
    y = np.array([rng.choice(10, p=p) for p in truth])
    return softmax(logits), y


def test_temperature_fit_recovers_the_overconfidence():
    probs, y = overconfident()
    assert digits.fit_temperature(probs, y) == pytest.approx(2.5, rel=0.15)


def test_calibration_lowers_the_expected_calibration_error():
    probs, y = overconfident()
    before = digits.expected_calibration_error(probs, y)
    after = digits.expected_calibration_error(digits.calibrated(probs, digits.fit_temperature(probs, y)), y)
    assert before > 0.1 and after < 0.03


def test_ece_is_zero_when_confidence_matches_accuracy():
    probs = np.tile(np.r_[0.75, [0.25 / 9] * 9], (8, 1))
    y = np.array([0, 0, 0, 1, 0, 0, 0, 1])  # 75% right at 75% confidence
    assert digits.expected_calibration_error(probs, y) == pytest.approx(0.0, abs=1e-6)


def test_calibration_comes_from_the_card_with_safe_defaults():
    assert digits.calibration_of({}) == digits.DEFAULT_CALIBRATION
    assert digits.calibration_of(None) == digits.DEFAULT_CALIBRATION
    card = {"test": {"calibration": {"temperature": 1.7, "unsure_below": 0.8, "fitted_on": "x"}}}
    cal = digits.calibration_of(card)
    assert cal["temperature"] == 1.7 and cal["unsure_below"] == 0.8
    assert cal["not_a_digit_above"] == digits.DEFAULT_CALIBRATION["not_a_digit_above"]


# ---------------------------------------------------------------- outcomes


def test_three_outcomes():
    raw = np.array([[0.96] + [0.003] * 9 + [0.013],  # a clear 0
                    [0.3, 0.3] + [0.03] * 8 + [0.16],  # torn between 0 and 1
                    [0.01] * 10 + [0.9]])  # not a digit
    outcomes, probs, other = digits.decide(raw, {"temperature": 1.0, "unsure_below": 0.6, "not_a_digit_above": 0.5})
    assert outcomes == ["digit", "unsure", "not a digit"]
    assert probs.shape == (3, 10) and np.allclose(probs.sum(1) + other, 1, atol=1e-5)


def test_ten_output_models_never_say_not_a_digit():
    outcomes, _, other = digits.decide(np.eye(10)[[3, 4]])
    assert outcomes == ["digit", "digit"] and not other.any()


class FakeModel:
    """A predict_fn with a card's calibration, answering `answer` for every image."""

    def __init__(self, answer, calibration=None):
        self.answer = np.asarray(answer, np.float32)
        self.calibration = {**digits.DEFAULT_CALIBRATION, **(calibration or {})}

    def __call__(self, x):
        return np.tile(self.answer, (len(x), 1))


def test_not_a_digit_reads_as_question_mark():
    reading = digits.read_canvas(FakeModel([0.01] * 10 + [0.9]), canvas_with("A"))
    assert reading.outcomes == ["not a digit"] and reading.number == "?" and not reading.confident


def test_unsure_threshold_from_the_card_is_used():
    answer = [0.7] + [0.3 / 9] * 9
    assert digits.read_canvas(FakeModel(answer), canvas_with("0")).number == "0"
    assert digits.read_canvas(FakeModel(answer, {"unsure_below": 0.8}), canvas_with("0")).number == "?"


# ---------------------------------------------------------------- touching digits


def two_touching_rings(gap: int = -6):
    """Two tall rings ("00") whose strokes overlap by `-gap` pixels: one connected piece."""
    canvas = np.zeros((280, 560), np.uint8)
    cv2.ellipse(canvas, (200, 140), (45, 90), 0, 0, 360, 255, 16)
    cv2.ellipse(canvas, (200 + 90 + 16 + gap, 140), (45, 90), 0, 0, 360, 255, 16)
    return canvas


def narrow_reader(x):
    """A fake model: a 0 when the ink in the 28x28 image is narrow (one ring), else unsure."""
    width = np.array([np.ptp(np.nonzero(img[..., 0].max(0) > 0.1)[0]) for img in x])
    sure = np.r_[0.97, [0.03 / 9] * 9]
    vague = np.r_[[0.1] * 10]
    return np.array([sure if w < 16 else vague for w in width], np.float32)


def test_touching_digits_are_split_at_the_best_column():
    ink = digits.ink(rgba_of(two_touching_rings()))
    assert len(digits.segment(ink)) == 1  # one connected piece
    reading = digits.read_canvas(narrow_reader, rgba_of(two_touching_rings()))
    assert reading.number == "00" and len(reading.images) == 2


def test_a_single_digit_is_not_split():
    canvas = np.zeros((280, 560), np.uint8)
    cv2.ellipse(canvas, (280, 140), (45, 90), 0, 0, 360, 255, 16)
    assert digits.cut_candidates(digits.ink(rgba_of(canvas)))[2] == []
    assert digits.read_canvas(narrow_reader, rgba_of(canvas)).number == "0"


def test_a_sliver_read_as_a_one_costs_more_than_a_one():
    one = np.r_[0.0, 0.99, [0.01 / 9] * 9]
    sliver, thin_one = digits._span_score(one, (5, 100), 100), digits._span_score(one, (20, 100), 100)
    assert sliver < thin_one == digits._span_score(one, (30, 100), 100)  # a 1 as wide as a fifth: no cost
    zero = np.r_[0.99, [0.01 / 10] * 10]
    assert digits._span_score(zero, (20, 100), 100) < thin_one  # other digits are narrow below 0.35


def test_best_split_picks_the_highest_scoring_chain():
    spans = [(0, 10), (0, 20), (10, 20), (0, 30), (10, 30), (20, 30)]
    scores = {s: -5.0 for s in spans}
    scores.update({(0, 10): -0.1, (10, 30): -0.2})
    assert digits._best_split(spans, scores, 0, 30) == [(0, 10), (10, 30)]


def test_a_ten_digit_model_grows_a_not_a_digit_output(tmp_path):
    from pipelines import core

    ten = digits.build_model(digits.Settings(reject_class=False))
    core.save_model(ten, tmp_path / "ten.keras")
    eleven = digits.warm_start_digits(digits.build_model(digits.Settings()), str(tmp_path / "ten.keras"))
    x = np.random.default_rng(0).random((3, 28, 28)).astype(np.float32)
    p10, p11 = digits.predict(ten, x), digits.predict(eleven, x)
    assert p11.shape == (3, 11) and (p11[:, 10] < 0.1).all()  # a new output starts unlikely
    np.testing.assert_allclose(p11[:, :10] / p11[:, :10].sum(1, keepdims=True), p10, atol=1e-5)


def test_freeze_features_trains_only_the_output_layer(tmp_path):
    from conftest import synthetic_mnist

    from pipelines import core, runs

    x, y = synthetic_mnist(12)
    base = digits.build_model(digits.Settings(reject_class=False))
    core.save_model(base, tmp_path / "base.keras")
    settings = digits.Settings(epochs=1, batch_size=32, freeze_features=True, canvas_styles=False,
                               init_from=str(tmp_path / "base.keras"))
    run = runs.Run.create("digits", settings)
    with runs.running(run):
        card = digits.train(settings, run, data=(x[:100], y[:100], x[100:], y[100:]))
    model = core.load_model(run.dir / "model.keras")
    for before, after in zip(base.get_weights()[:-2], model.get_weights()[:-2]):
        np.testing.assert_array_equal(before, after)
    assert model.output_shape == (None, 11) and "calibration" in card["test"]


def test_composed_model_keeps_the_digits_and_takes_not_a_digit_from_the_other(tmp_path):
    from pipelines import core

    base = digits.build_model(digits.Settings(reject_class=False))
    other = digits.build_model(digits.Settings(seed=1))
    model = digits.with_reject_from(base, other)
    core.save_model(model, tmp_path / "m.keras")
    model = core.load_model(tmp_path / "m.keras")
    x = np.random.default_rng(0).random((4, 28, 28)).astype(np.float32)
    p, b, o = digits.predict(model, x), digits.predict(base, x), digits.predict(other, x)
    np.testing.assert_allclose(p[:, 10], o[:, 10], atol=1e-5)
    np.testing.assert_allclose(p[:, :10] / p[:, :10].sum(1, keepdims=True), b, atol=1e-5)


def test_recalibrate_keeps_the_weights_and_fits_the_thresholds_again(tmp_path, mnist_dir, monkeypatch):
    from pipelines import core

    monkeypatch.setenv("RUNS_DIR", str(tmp_path / "runs"))
    model = digits.build_model(digits.Settings())
    core.save_model(model, tmp_path / "m.keras")
    run_dir = digits.recalibrate(str(tmp_path / "m.keras"), mnist_dir)
    again = core.load_model(run_dir / "model.keras")
    for before, after in zip(model.get_weights(), again.get_weights()):
        np.testing.assert_array_equal(before, after)
    card = core.read_json(run_dir / "card.json")
    assert card["settings"]["weights"] == "unchanged"
    assert "5,000 stroke-font digits" in card["test"]["calibration"]["fitted_on"]
    assert card["score"]["benchmark"].startswith("mnist-test:")  # comparable with every other digits model
