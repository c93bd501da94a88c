"""Unit tests of pipelines.digits: preprocessing, segmentation, model, training, feedback."""

import numpy as np
import pytest
from conftest import canvas_with, synthetic_mnist

from pipelines import core, digits, runs


def centre_of_mass(img):
    ys, xs = np.indices(img.shape)
    return (ys * img).sum() / img.sum(), (xs * img).sum() / img.sum()


def test_to_mnist_centres_the_mass_and_fits_20x20():
    ink = np.zeros((280, 280), np.float32)
    ink[10:90, 200:260] = 1.0  # a blob in a corner
    out = digits.to_mnist(ink)
    assert out.shape == (28, 28)
    cy, cx = centre_of_mass(out)
    assert abs(cy - 13.5) < 0.5 and abs(cx - 13.5) < 0.5
    ys, xs = np.nonzero(out > 0.05)
    assert ys.max() - ys.min() + 1 <= 21 and xs.max() - xs.min() + 1 <= 21


def test_to_mnist_keeps_aspect_ratio():
    ink = np.zeros((280, 280), np.float32)
    ink[40:240, 130:150] = 1.0  # a 200x20 bar, like a "1"
    out = digits.to_mnist(ink)
    ys, xs = np.nonzero(out > 0.3)
    height, width = ys.max() - ys.min() + 1, xs.max() - xs.min() + 1
    assert 19 <= height <= 21 and width <= 4


def test_ink_reads_alpha_and_opaque_backgrounds():
    rgba = canvas_with("7")
    assert digits.ink(rgba).max() == 1.0
    opaque = np.full_like(rgba, 255)
    opaque[..., :3] -= rgba[..., 3:4]  # black ink on white, fully opaque
    np.testing.assert_allclose(digits.ink(opaque), digits.ink(rgba), atol=1 / 255)


@pytest.mark.parametrize("rgba", [None, np.zeros((280, 560, 4), np.uint8)])
def test_blank_canvas_asks_to_draw(rgba):
    reading = digits.read_canvas(lambda x: pytest.fail("must not predict"), rgba)
    assert reading.status == "blank" and "Draw" in reading.message


def test_nearly_blank_canvas_is_blank():
    rgba = np.zeros((280, 560, 4), np.uint8)
    rgba[100:104, 100:104, 3] = 255  # a 16-pixel speck
    assert digits.read_canvas(None, rgba).status == "blank"


def test_full_canvas_is_refused():
    rgba = np.full((280, 560, 4), 255, np.uint8)
    rgba[..., :3] = 0
    rgba[0, 0, 3] = 0  # still "transparent" somewhere, so alpha is the ink
    reading = digits.read_canvas(None, rgba)
    assert reading.status == "full" and "clear" in reading.message.lower()


def test_several_digits_are_segmented_left_to_right():
    img = digits.ink(canvas_with("3 1 7"))
    parts = digits.segment(img)
    assert len(parts) == 3
    lefts = [np.nonzero(p.sum(0))[0].min() for p in parts]
    assert lefts == sorted(lefts)
    seen = []
    reading = digits.read_canvas(lambda x: seen.append(x.shape) or np.eye(10)[[3, 1, 7]], canvas_with("3 1 7"))
    assert seen == [(3, 28, 28, 1)] and reading.number == "317" and reading.confident


def test_strokes_over_each_other_are_one_digit():
    img = np.zeros((280, 280), np.float32)
    img[60:200, 100:110] = 1  # the stem of a 4
    img[40:50, 70:140] = 1  # a separate bar over it (5's top bar)
    assert len(digits.segment(img)) == 1


def test_low_confidence_is_not_sure():
    reading = digits.read_canvas(lambda x: np.full((len(x), 10), 0.1), canvas_with("8"))
    assert reading.status == "ok" and not reading.confident


@pytest.mark.parametrize("arch,outputs", [("default", 11), ("baseline", 10)])
def test_model_shapes(arch, outputs):
    settings = digits.Settings.baseline() if arch == "baseline" else digits.Settings()
    model = digits.build_model(settings)
    assert model.input_shape == (None, 28, 28, 1) and model.output_shape == (None, outputs)
    assert digits.predict(model, np.zeros((3, 28, 28), np.uint8)).shape == (3, outputs)


def test_unknown_arch_is_refused():
    with pytest.raises(ValueError, match="unknown arch"):
        digits.build_model(digits.Settings(arch="resnet"))


def test_augment_keeps_shape_and_range():
    x = np.random.default_rng(0).random((4, 28, 28, 1)).astype(np.float32)
    out = np.asarray(digits.augment_batch(x))
    assert out.shape == x.shape and out.min() >= 0 and out.max() <= 1.0001


def test_train_one_epoch_saves_reloads_and_predicts_the_same():
    x, y = synthetic_mnist(20)
    data = (x[:160], y[:160], x[160:], y[160:])
    settings = digits.Settings(epochs=1, batch_size=32)
    run = runs.Run.create("digits", settings)
    with runs.running(run):
        card = digits.train(settings, run, data=data, promote="always")
    assert run.state == "finished" and card["test"]["n"] == 40
    assert {r["kind"] for r in run.metrics()} >= {"epoch"}
    trained = core.load_model(run.dir / "model.keras")
    active = core.load_model(core.model_path("digits"))
    np.testing.assert_allclose(digits.predict(trained, x[:8]), digits.predict(active, x[:8]), atol=1e-6)
    assert core.active_card("digits")["run"] == run.id


def test_classification_report():
    report = core.classification_report([0, 1, 1, 2], [0, 1, 2, 2], 3)
    assert report["accuracy"] == 0.75
    assert report["confusion_matrix"] == [[1, 0, 0], [0, 1, 1], [0, 0, 1]]
    assert report["per_class"]["1"] == {"precision": 1.0, "recall": 0.5, "f1": pytest.approx(2 / 3)}


def test_feedback_round_trip():
    img = np.zeros((28, 28), np.float32)
    img[5:20, 12:15] = 1
    other = np.roll(img, 5, axis=1)
    digits.save_feedback(img, 1)
    digits.save_feedback(other, 7)
    x, y = digits.load_feedback()
    assert x.shape == (2, 28, 28) and sorted(y.tolist()) == [1, 7] and x.max() == 255


def test_feedback_is_saved_once_per_drawing():
    img = np.zeros((28, 28), np.float32)
    img[5:20, 12:15] = 1
    first, new = digits.save_feedback(img, 1)
    again, new_again = digits.save_feedback(img, 1)  # a double click
    assert new and not new_again and first == again
    digits.save_feedback(img, 4)  # relabelled: the drawing keeps one file, with the new label
    x, y = digits.load_feedback()
    assert x.shape == (1, 28, 28) and y.tolist() == [4]


def test_feedback_rejects_bad_label():
    with pytest.raises(ValueError):
        digits.save_feedback(np.zeros((28, 28)), 12)


def test_mnist_from_data_dir(tmp_path):
    x, y = synthetic_mnist(2)
    np.savez_compressed(tmp_path / "mnist.npz", x_train=x, y_train=y, x_test=x[:5], y_test=y[:5])
    x_train, y_train, x_test, _ = digits.load_data(tmp_path)
    assert x_train.shape == (20, 28, 28) and x_test.shape == (5, 28, 28)
    assert digits.class_distribution(y_train) == {d: 2 for d in range(10)}


def test_mnist_missing_offline_says_where_to_put_it(tmp_path, monkeypatch):
    import keras

    def offline():
        raise OSError("no network")

    monkeypatch.setattr(keras.datasets.mnist, "load_data", offline)
    with pytest.raises(core.DataUnavailable, match="mnist.npz"):
        digits.load_data(tmp_path)


def test_init_from_starts_with_the_saved_weights(tmp_path):
    from pipelines.training import warm_start

    first = digits.build_model(digits.Settings())
    core.save_model(first, tmp_path / "m.keras")
    second = warm_start(digits.build_model(digits.Settings(seed=1)), str(tmp_path / "m.keras"))
    x = np.random.default_rng(0).random((2, 28, 28)).astype(np.float32)
    np.testing.assert_allclose(digits.predict(first, x), digits.predict(second, x), atol=1e-6)


def test_the_canvas_png_round_trip_and_bad_data_urls():
    import base64

    import cv2

    rgba = canvas_with("7")
    png = cv2.imencode(".png", cv2.cvtColor(rgba, cv2.COLOR_RGBA2BGRA))[1].tobytes()
    url = "data:image/png;base64," + base64.b64encode(png).decode()
    assert np.array_equal(digits.rgba_from_png(digits.png_from_data_url(url)), rgba)
    for bad in ("", "data:image/png;base64,", "data:text/plain;base64,aGk=", "data:image/png;base64,@@@"):
        assert digits.png_from_data_url(bad) is None
    assert digits.rgba_from_png(None) is None and digits.rgba_from_png(b"not a png") is None


def test_a_drawing_scales_about_the_canvas_corner():
    raw = {"version": "6", "objects": [{"type": "Path", "left": 100, "top": 40, "scaleX": 1, "scaleY": 1},
                                       {"type": "Path", "left": 10, "top": 0}]}
    half = digits.scale_drawing(raw, 0.5)
    assert [(o["left"], o["top"], o["scaleX"], o["scaleY"]) for o in half["objects"]] == [(50, 20, 0.5, 0.5),
                                                                                       (5, 0, 0.5, 0.5)]
    assert half["version"] == "6" and raw["objects"][0]["left"] == 100  # the original untouched
    assert digits.scale_drawing(raw, 1) is raw and digits.scale_drawing(None, 2) is None
