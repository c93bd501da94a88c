"""Mood trained on a lent accelerator: the pack that travels, the same split as `mood train`, the time-budgeted
schedule, and a model trained by the backend-neutral loop adopted here through the promotion gate (synthetic data)."""

import json

import numpy as np
import pytest
from test_mood_ferplus import write_data

from pipelines import core, mood, mood_accel, runs


@pytest.fixture
def fer_dir(tmp_path):
    folder = tmp_path / "data"
    write_data(folder, n_train=70, n_test=14)
    return folder


def test_pack_keeps_every_face_within_two_grey_levels_with_its_labels_and_votes(fer_dir, tmp_path):
    info = mood_accel.pack(tmp_path / "faces.npz", fer_dir)
    x, y, votes = mood_accel.unpack(tmp_path / "faces.npz")
    data = mood.load_data(fer_dir)
    assert info["faces"] == len(x) == len(data.x_train)
    assert np.abs(x.astype(int) - data.x_train.astype(int)).max() <= 2  # 6 bits, the middle of each step
    np.testing.assert_array_equal(y, data.y_train)
    assert votes.shape == (len(x), 10)


def test_split_is_the_one_mood_train_makes(fer_dir, tmp_path):
    mood_accel.pack(tmp_path / "faces.npz", fer_dir)
    x, y, votes = mood_accel.unpack(tmp_path / "faces.npz")
    settings = mood.Settings(labels="mixed", label_mix=0.5, val_split=0.2)
    (xf, tf, w), (xv, tv) = mood_accel.split(settings, x, y, votes)
    assert len(xf) + len(xv) == len(x) and xf.shape[1:] == (48, 48, 1) and 0 <= xf.min() and xf.max() <= 1
    assert np.allclose(tf.sum(1), 1) and np.allclose(tv.sum(1), 1)
    assert w.shape == (len(xf),) and w.min() > 0
    votes = votes.copy()
    votes[:5, 9] = 10  # "not a face" to FER+: left out, as mood.train does
    (xf2, _, _), (xv2, _) = mood_accel.split(settings, x, y, votes)
    assert len(xf2) + len(xv2) == len(x) - 5


def test_host_augmentation_keeps_shape_and_range_and_repeats_with_its_seed():
    from conftest import synthetic_faces

    x = mood.normalize(synthetic_faces(16)[0])
    a = mood_accel.augment_faces(x, np.random.default_rng(1))
    assert a.shape == x.shape and a.dtype == x.dtype and 0 <= a.min() and a.max() <= 1
    np.testing.assert_array_equal(a, mood_accel.augment_faces(x, np.random.default_rng(1)))
    assert np.abs(a - x).mean() > 0.01  # the faces did move


def test_cosine_schedule_warms_up_then_decays_to_one_percent():
    lrs = [mood_accel.cosine_lr(1.0, e, 10) for e in range(12)]
    assert lrs[0] < lrs[1] < lrs[2] == 1.0
    assert all(a >= b for a, b in zip(lrs[2:], lrs[3:]))
    assert lrs[10] == pytest.approx(0.01) and lrs[11] == pytest.approx(0.01)


def test_a_model_trained_by_the_accelerator_loop_is_adopted_scored_and_gated(fer_dir, tmp_path, capsys):
    mood_accel.pack(tmp_path / "faces.npz", fer_dir)
    out = tmp_path / "out"
    info = mood_accel.train(mood.Settings(arch="default", batch_size=16, val_split=0.2), tmp_path / "faces.npz", out,
                            budget_s=1, max_epochs=3)
    assert (out / "model.keras").exists() and (out / "trained.json").exists()
    assert 1 <= len(info["history"]) <= 3 and info["trained_with"]["backend"] == "tensorflow"
    run_dir = mood.adopt(out / "model.keras", fer_dir, promote="if-better")
    run = runs.Run(run_dir)
    card = run.card()
    assert run.state == "finished" and run.status()["promoted"]  # no active model yet: the first
    assert card["settings"]["trained_with"]["script"] == "pipelines.mood_accel"
    assert card["score"]["benchmark"].startswith("fer2013-test:") and "ferplus" in card["test"]
    assert [r["epoch"] for r in card["history"]] == list(range(len(info["history"])))
    assert core.active_card("mood")["run"] == run.id
    mood.main(["adopt", str(out / "model.keras"), "--data-dir", str(fer_dir)])  # the command line: a second run
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["test_accuracy"] == card["test"]["accuracy"]
    assert core.active_card("mood")["run"] == run.id  # --promote never by default


def test_adopt_refuses_a_model_that_does_not_read_faces(fer_dir, tmp_path):
    import keras

    other = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Flatten(), keras.layers.Dense(10)])
    other.save(tmp_path / "model.keras")
    with pytest.raises(core.InvalidSettings, match="not a mood model"):
        mood.adopt(tmp_path / "model.keras", fer_dir)
    assert not (core.runs_dir() / "mood").exists()  # refused before any run is made


def test_an_ensemble_averages_its_networks_in_half_the_file_and_is_gated(fer_dir, tmp_path, capsys):
    """Two networks stored in float16 (half their float32 size), read back in float32, giving the average of
    the two within float16's precision; composed into a run that is evaluated, scored and gated."""
    paths = []
    for seed in (0, 1):
        model = mood.build_model(mood.Settings(arch="default", seed=seed, mixed_precision=True))
        paths.append(tmp_path / f"m{seed}" / "model.keras")
        core.save_model(model, paths[-1])
    members = [core.load_model(p) for p in paths]
    core.save_model(mood.ensemble(members), tmp_path / "ensemble.keras")
    size = sum(p.stat().st_size for p in paths)
    assert (tmp_path / "ensemble.keras").stat().st_size < 0.6 * size
    read = core.load_model(tmp_path / "ensemble.keras")
    assert {w.dtype.name for w in read.get_weights()} == {"float32"}
    faces = np.random.default_rng(0).integers(0, 256, (6, 48, 48), np.uint8)
    mean = (mood.predict(members[0], faces) + mood.predict(members[1], faces)) / 2
    np.testing.assert_allclose(mood.predict(read, faces), mean, atol=2e-3)

    run_dir = mood.compose(paths, fer_dir, promote="if-better")
    card = runs.Run(run_dir).card()
    assert card["settings"]["arch"] == "ensemble" and len(card["settings"]["composed_from"]) == 2
    assert card["score"]["benchmark"].startswith("fer2013-test:") and "ferplus" in card["test"]
    assert core.active_card("mood")["run"] == runs.Run(run_dir).id  # no active model yet: the first
    mood.main(["ensemble", *map(str, paths), "--data-dir", str(fer_dir)])
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["test_accuracy"] == card["test"]["accuracy"]


def test_an_ensemble_refuses_one_network_and_a_model_that_does_not_read_faces():
    import keras

    face = mood.build_model(mood.Settings(arch="default"))
    with pytest.raises(core.InvalidSettings, match="at least two"):
        mood.ensemble([face])
    other = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Flatten(), keras.layers.Dense(7)])
    with pytest.raises(core.InvalidSettings, match="not a mood model"):
        mood.ensemble([face, other])
