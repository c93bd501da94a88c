"""Mood with FER+ crowd votes: vote mapping, training targets, evaluation on both label sets,
and test-time views (synthetic data only)."""

import numpy as np
import pytest
from conftest import synthetic_faces

from pipelines import core, mood, runs

# FER+ columns: neutral, happiness, surprise, sadness, anger, disgust, fear, contempt, unknown, NF
ANGER, NEUTRAL, HAPPY, UNKNOWN = 4, 0, 1, 8


def votes(*pairs, n_cols=10):
    row = np.zeros(n_cols, np.uint8)
    for col, count in pairs:
        row[col] = count
    return row


def test_votes_map_to_fer2013_classes_and_drop_single_stray_votes():
    v = mood.ferplus_votes(np.stack([votes((ANGER, 9), (HAPPY, 1)), votes((NEUTRAL, 5), (HAPPY, 5))]))
    assert v.shape == (2, 7)
    assert v[0].tolist() == [9, 0, 0, 0, 0, 0, 0]  # the single "happiness" vote is noise
    assert v[1, mood.CLASSES.index("neutral")] == 5 and v[1, mood.CLASSES.index("happy")] == 5


def test_targets_one_hot_votes_and_blend():
    y = np.array([0, 3])
    v = mood.ferplus_votes(np.stack([votes((NEUTRAL, 6), (ANGER, 4)), votes((UNKNOWN, 10))]))
    np.testing.assert_array_equal(mood.targets(y, v, "fer2013", 0.5), np.eye(7)[y])
    plus = mood.targets(y, v, "ferplus", 0.5)
    assert plus[0, 6] == pytest.approx(0.6) and plus[0, 0] == pytest.approx(0.4)
    np.testing.assert_array_equal(plus[1], np.eye(7)[3])  # no usable votes: the FER2013 label
    mixed = mood.targets(y, v, "mixed", 0.5)
    assert mixed[0, 0] == pytest.approx(0.7) and mixed[0, 6] == pytest.approx(0.3)
    assert np.allclose(mixed.sum(1), 1)


def test_ferplus_targets_need_the_votes_file():
    with pytest.raises(core.DataUnavailable, match="fer2013plus_labels.npz"):
        mood.targets(np.array([0]), None, "ferplus", 0.5)


def write_data(folder, n_train=28, n_test=14, votes_rows=None):
    x, y = synthetic_faces(n_train)
    folder.mkdir(parents=True, exist_ok=True)
    np.savez(folder / "fer2013.npz", x_train=x, y_train=y, x_test=x[:n_test], y_test=y[:n_test])
    rng = np.random.default_rng(0)
    vt = votes_rows if votes_rows is not None else n_train
    vote_train = np.zeros((vt, 10), np.uint8)
    vote_train[np.arange(vt), rng.integers(0, 7, vt)] = 10
    vote_test = np.zeros((n_test, 10), np.uint8)
    vote_test[:, HAPPY] = 10
    major = np.full(n_test, mood.CLASSES.index("happy"), np.int8)
    major[0] = -1
    np.savez(folder / "fer2013plus_labels.npz", votes_train=vote_train, votes_test=vote_test, majority7_test=major)
    return x, y


def test_votes_are_attached_only_when_aligned(tmp_path):
    write_data(tmp_path / "ok")
    d = mood.load_data(tmp_path / "ok")
    assert d.votes_train.shape == (28, 7) and d.ferplus_test.tolist()[:2] == [-1, 3]
    write_data(tmp_path / "bad", votes_rows=27)
    assert mood.load_data(tmp_path / "bad").votes_train is None


def test_ferplus_report_skips_images_without_a_majority():
    report = mood.ferplus_report(np.array([3, 3, 0]), np.array([-1, 3, 0]))
    assert report["n"] == 2 and report["accuracy"] == 1.0


def test_train_on_mixed_labels_reports_both_label_sets(tmp_path):
    write_data(tmp_path / "data", n_train=70)
    settings = mood.Settings(epochs=1, batch_size=32, labels="mixed", mixed_precision=False)
    run = runs.Run.create("mood", settings)
    with runs.running(run):
        card = mood.train(settings, run, data_dir=tmp_path / "data")
    assert card["settings"]["labels"] == "mixed"
    assert card["test"]["ferplus"]["n"] == 13 and 0 <= card["test"]["ferplus"]["accuracy"] <= 1


class MeanModel:
    """A fake model: the probability of class 0 is the image's mean brightness."""

    def predict_on_batch(self, x):
        m = x.reshape(len(x), -1).mean(1)
        return np.stack([m] + [(1 - m) / 6] * 6, 1)


def test_crop_views_keep_shape_and_average():
    x = np.random.default_rng(0).integers(0, 255, (5, 48, 48)).astype(np.uint8)
    views = mood.views(mood.normalize(x), "crops")
    assert len(views) == 10 and all(v.shape == (5, 48, 48, 1) for v in views)
    p = mood.predict(MeanModel(), x, tta="crops")
    assert p.shape == (5, 7) and np.allclose(p.sum(1), 1, atol=1e-5)
    flat = np.full((2, 48, 48), 128, np.uint8)  # every view of a flat image is the same
    np.testing.assert_allclose(mood.predict(MeanModel(), flat, tta="crops"), mood.predict(MeanModel(), flat))


def test_teacher_labels_need_teachers_and_a_mix_in_range():
    with pytest.raises(core.InvalidSettings, match="teachers"):
        mood.Settings(labels="teacher")
    with pytest.raises(core.InvalidSettings, match="label mix"):
        mood.Settings(labels="mixed", label_mix=1.5)
    with pytest.raises(core.InvalidSettings, match="labels"):
        mood.Settings(labels="crowd")


def test_distilled_training_learns_the_teachers_average(tmp_path):
    """Two trained models teach a third: its targets blend the FER2013 label with their averaged readings."""
    write_data(tmp_path / "data", n_train=70)
    teachers = []
    for seed in (0, 1):
        s = mood.Settings(epochs=1, batch_size=32, mixed_precision=False, seed=seed)
        run = runs.Run.create("mood", s)
        with runs.running(run):
            mood.train(s, run, data_dir=tmp_path / "data")
        teachers.append(str(run.dir / core.MODEL_FILE))
    data = mood.load_data(tmp_path / "data")
    probs = mood.teacher_probs(",".join(teachers), data.x_train)
    one = [mood.predict(core.load_model(t), data.x_train, tta="flip") for t in teachers]
    np.testing.assert_allclose(probs, (one[0] + one[1]) / 2, atol=1e-6)
    blend = mood.targets(data.y_train, probs, "teacher", 0.25)
    np.testing.assert_allclose(blend, 0.25 * np.eye(7)[data.y_train] + 0.75 * probs, atol=1e-6)

    settings = mood.Settings(epochs=1, batch_size=32, mixed_precision=False, labels="teacher", label_mix=0.25,
                             teachers=",".join(teachers))
    run = runs.Run.create("mood", settings)
    with runs.running(run):
        card = mood.train(settings, run, data_dir=tmp_path / "data")
    assert card["settings"]["labels"] == "teacher" and card["settings"]["teachers"] == ",".join(teachers)
    assert 0 <= card["test"]["accuracy"] <= 1
