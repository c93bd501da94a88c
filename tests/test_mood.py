"""Unit tests of pipelines.mood (data forms, faces, model, training) and pipelines.songs."""

import argparse

import cv2
import numpy as np
import pandas as pd
import pytest
from conftest import face_photo, jpeg, synthetic_faces

from pipelines import core, mood, runs, songs


def test_load_npz_csv_and_folders(tmp_path):
    x, y = synthetic_faces(14)
    (tmp_path / "npz").mkdir()
    np.savez(tmp_path / "npz" / "fer2013.npz", x_train=x, y_train=y, x_test=x[:7], y_test=y[:7],
             test_split=np.array([0, 0, 0, 1, 1, 1, 1], np.uint8))
    d = mood.load_data(tmp_path / "npz")
    assert d.x_train.shape == (14, 48, 48) and d.test_split.sum() == 4

    (tmp_path / "csv").mkdir()
    usage = ["Training"] * 10 + ["PublicTest"] * 2 + ["PrivateTest"] * 2
    pd.DataFrame({"emotion": y, "pixels": [" ".join(map(str, im.ravel())) for im in x], "Usage": usage}) \
        .to_csv(tmp_path / "csv" / "fer2013.csv", index=False)
    d = mood.load_data(tmp_path / "csv")
    assert d.x_train.shape == (10, 48, 48) and d.test_split.tolist() == [0, 0, 1, 1]
    np.testing.assert_array_equal(d.x_train, x[:10])

    for split in ("train", "test"):
        for i, (im, label) in enumerate(zip(x, y)):
            folder = tmp_path / "folders" / split / mood.CLASSES[label]
            folder.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(folder / f"im{i}.png"), im)
    d = mood.load_data(tmp_path / "folders")
    assert d.x_train.shape == (14, 48, 48) and sorted(d.y_train.tolist()) == sorted(y.tolist())


def test_missing_data_says_what_to_put_where(tmp_path):
    with pytest.raises(core.DataUnavailable, match="fer2013.npz"):
        mood.load_data(tmp_path)
    with pytest.raises(core.DataUnavailable, match="DATA_DIR"):
        mood.load_data(None)


def test_class_weights_lift_the_rare_class():
    y = np.array([0] * 100 + [1] * 10 + [3] * 200)
    w = mood.class_weights(y)
    assert w[1] > w[0] > w[3]


@pytest.mark.parametrize("arch", ["default", "baseline"])
def test_model_shapes(arch):
    model = mood.build_model(mood.Settings(arch=arch))
    assert model.output_shape == (None, 7)
    probs = mood.predict(model, np.zeros((3, 48, 48), np.uint8))
    assert probs.shape == (3, 7) and np.allclose(probs.sum(1), 1, atol=1e-5)


def test_a_mixed_precision_model_is_read_in_float32(tmp_path):
    """Trained in bfloat16, read in float32 (CPUs without native bfloat16 emulate it, 3x slower):
    the same weights, and the same readings within bfloat16's precision."""
    model = mood.build_model(mood.Settings(arch="default", mixed_precision=True))
    assert "mixed_bfloat16" in {layer.dtype_policy.name for layer in model.layers}
    core.save_model(model, tmp_path / "model.keras")
    read = core.load_model(tmp_path / "model.keras")
    assert {layer.dtype_policy.name for layer in read.layers} == {"float32"}
    assert all(np.array_equal(a, b) for a, b in zip(model.get_weights(), read.get_weights()))
    faces = np.random.default_rng(0).integers(0, 256, (4, 48, 48), np.uint8)
    np.testing.assert_allclose(mood.predict(read, faces), mood.predict(model, faces), atol=0.02)
    assert core.in_float32(read) is read  # nothing to convert


def test_command_line_arch_is_the_one_trained():
    parser = argparse.ArgumentParser()
    runs.add_train_flags(parser, archs=mood.ARCHS)
    for arch in mood.ARCHS:
        assert runs.settings_from_args(mood.Settings, parser.parse_args(["--arch", arch])).arch == arch


def test_augment_keeps_range():
    x = np.random.default_rng(0).random((4, 48, 48, 1)).astype(np.float32)
    out = np.asarray(mood.augment_batch(x))
    assert out.shape == x.shape and 0 <= out.min() and out.max() <= 1


def test_crop_and_normalisation():
    gray = np.arange(200 * 300, dtype=np.uint32).reshape(200, 300).astype(np.uint8)
    crop = mood.crop_face(gray, (10, 10, 100, 100))
    assert crop.shape == (48, 48) and crop.dtype == np.uint8
    edge = mood.crop_face(gray, (250, 150, 60, 60))  # runs off the photo: padded, not broken
    assert edge.shape == (48, 48)
    x = mood.normalize(np.full((2, 48, 48), 255, np.uint8))
    assert x.shape == (2, 48, 48, 1) and x.max() == 1.0


def test_faces_found_in_a_portrait_and_none_in_noise():
    photo = face_photo()
    assert len(mood.find_faces(photo)) == 1
    assert len(mood.find_faces(np.concatenate([photo, photo], 1))) == 2
    assert mood.find_faces(np.full((480, 640, 3), 128, np.uint8)) == []


def two_faces_small_then_large() -> np.ndarray:
    photo = face_photo()
    small = cv2.resize(photo, None, fx=0.6, fy=0.6, interpolation=cv2.INTER_AREA)
    small = np.pad(small, ((0, photo.shape[0] - small.shape[0]), (0, 0), (0, 0)), constant_values=128)
    return np.concatenate([small, photo], 1)


def test_faces_are_numbered_left_to_right():
    boxes = mood.find_faces(two_faces_small_then_large())
    assert len(boxes) == 2 and boxes[0][0] < boxes[1][0] and boxes[0][2] < boxes[1][2]  # the smaller is on the left


def test_a_box_inside_a_larger_face_is_not_a_second_face():
    face, cheek, neighbour, touching = (0, 0, 100, 100), (55, 50, 30, 30), (150, 0, 80, 80), (90, 10, 70, 70)
    assert mood.drop_nested([cheek, face, neighbour]) == [face, neighbour]
    assert sorted(mood.drop_nested([face, touching])) == [face, touching]  # overlapping a little: two faces


def test_a_faces_tag_stays_inside_the_photo():
    shape = (200, 300, 3)
    assert mood.tag_place((50, 60, 80, 80), (90, 20), shape) == (50, 40)  # above
    assert mood.tag_place((50, 5, 80, 80), (90, 20), shape) == (50, 85)  # no room above: below
    assert mood.tag_place((250, 0, 50, 200), (90, 20), shape) == (210, 0)  # neither: inside, moved in from the right


def test_faces_in_rows_are_numbered_row_by_row():
    """A group photo in two rows of three went down the columns (1, 3, 5 on top, 2, 4, 6 below)."""
    top = [(x, 100 + dy, 80, 80) for x, dy in ((40, 6), (240, -4), (440, 0))]
    bottom = [(x, 300 + dy, 90, 90) for x, dy in ((30, 0), (230, 10), (430, -8))]
    shuffled = [bottom[2], top[1], bottom[0], top[2], top[0], bottom[1]]
    assert mood.reading_order(shuffled) == top + bottom


def test_a_tall_photos_tag_is_sized_to_its_width():
    """A 400x6000 photo's tag was sized by its height: taller than the face, cut off at the photo's right edge."""
    face = mood.Face(box=(100, 200, 200, 200), crop=None, probs=np.eye(7)[6])  # "neutral"
    white = np.full((6000, 400, 3), 255, np.uint8)
    drawn = mood.annotate(white, [face])
    tagged = np.flatnonzero((drawn != 255).any(axis=(1, 2)))  # rows with anything drawn: the box and the tag
    assert tagged.min() >= 200 - 40 and tagged.max() <= 400 + 40  # the tag sits just above or below the face
    label, size = mood.tag_text(1, face, 400, 3.0, 2, crowded=False)  # a tag too wide for its photo shrinks
    assert label.startswith("1: neutral") and size < 3.0


@pytest.mark.parametrize("shape, width", [
    ((1, 1), 4),  # a 1x1 photo filled the column
    ((48, 48), 192),  # a small face photo, shown at 4x
    ((480, 640), 640),  # a common photo: its own width (the column caps it)
    ((4000, 3000), 675),  # a phone's portrait photo: a screen high
    ((6000, 400), 200),  # a very tall one: not narrower than 200 px (it was shown 5,000+ px high on a phone)
])
def test_a_photo_is_shown_at_a_size_that_fits_a_screen(shape, width):
    assert mood.shown_width(*shape) == width
    shown = mood.for_screen(np.zeros((*shape, 3), np.uint8))
    assert shown.shape[1] == width and abs(shown.shape[0] - shape[0] * width / shape[1]) <= 1


def test_see_through_parts_of_a_png_are_white():
    rgba = np.zeros((20, 20, 4), np.uint8)
    rgba[:10, :, 3] = 255  # top half black and opaque, bottom half black and see-through
    rgb = mood.decode_image(cv2.imencode(".png", rgba)[1].tobytes())
    assert rgb.shape == (20, 20, 3) and rgb[:10].max() == 0 and rgb[10:].min() == 255
    gray = mood.decode_image(cv2.imencode(".png", np.full((8, 8), 77, np.uint8))[1].tobytes())
    assert gray.shape == (8, 8, 3) and (gray == 77).all()


def test_read_photo_labels_every_face():
    photo = np.concatenate([face_photo(), face_photo()], 1)
    reading = mood.read_photo(lambda x: np.tile(np.eye(7)[3], (len(x), 1)), photo)
    assert [f.mood for f in reading.faces] == ["happy", "happy"]
    assert reading.image.shape == photo.shape and not np.array_equal(reading.image, photo)


def test_decode_rejects_corrupt_and_huge_files():
    with pytest.raises(ValueError, match="damaged or is not a photo"):
        mood.decode_image(b"\x89PNG garbage")
    with pytest.raises(ValueError, match="empty"):
        mood.decode_image(b"")
    with pytest.raises(ValueError, match="too large"):
        mood.decode_image(jpeg(np.zeros((100, 100, 3), np.uint8)), max_pixels=5000)
    assert mood.decode_image(jpeg(face_photo())).shape == (600, 512, 3)


def test_a_very_large_phone_photo_is_read_smaller_not_refused():
    # 10,240 px long (a 200 MP phone photo is 16,320): read at 1/4, still twice the size faces are found at.
    big = jpeg(np.full((480, 10_240, 3), 90, np.uint8))
    assert mood.decode_image(big, max_pixels=1_000_000).shape == (120, 2560, 3)
    assert mood.decode_image(jpeg(np.zeros((480, 5000, 3), np.uint8))).shape == (480, 5000, 3)  # not large


@pytest.mark.parametrize("height, width, scale", [(600, 512, 1), (4000, 6000, 2), (9000, 12_000, 4),
                                                  (12_240, 16_320, 8)])  # 200 MP: over Pillow's bomb limit
def test_how_much_smaller_a_jpeg_is_read_comes_from_its_header(height, width, scale):
    data = bytearray(jpeg(np.zeros((8, 8, 3), np.uint8)))
    sof = data.index(b"\xff\xc0")  # baseline frame header: length (2), precision (1), height (2), width (2)
    data[sof + 5:sof + 9] = height.to_bytes(2, "big") + width.to_bytes(2, "big")
    assert mood.jpeg_scale(bytes(data)) == scale


def test_the_command_line_says_why_a_photo_cannot_be_read(tmp_path):
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8 not really")
    with pytest.raises(SystemExit, match="Could not read .*broken.jpg: the file is damaged"):
        mood.main(["predict", str(tmp_path / "broken.jpg")])


def test_train_one_epoch_saves_reloads_and_predicts_the_same(tiny_mood_model, monkeypatch):
    run, card, models = tiny_mood_model
    monkeypatch.setenv("MODELS_DIR", str(models))
    assert run.state == "finished"
    assert {"public_test_accuracy", "private_test_accuracy", "per_class"} <= card["test"].keys()
    x, _ = synthetic_faces(7)
    fn, active = mood.load()
    np.testing.assert_allclose(fn(x), mood.predict(core.load_model(run.dir / "model.keras"), x), atol=1e-5)
    assert active["run"] == run.id


def test_weight_averaging_keeps_the_averaged_weights(tiny_mood_model, tmp_path, monkeypatch):
    """With --ema the best checkpoint (so the model) holds the moving average of the weights. Keras
    starts the average at the weights after the first step (at most the learning rate away from the
    start, with Adam); with a momentum near 1 it stays there, while the raw weights move on for 34 steps."""
    start_file = tiny_mood_model[0].dir / "model.keras"
    start = core.load_model(start_file).get_weights()
    monkeypatch.setenv("RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("MODELS_DIR", str(tmp_path / "models"))
    x, y = synthetic_faces()
    data = mood.Data(x, y, x[:28], y[:28], (np.arange(28) % 2).astype(np.uint8))
    moved = {}
    for ema in (0.0, 0.999999):
        settings = mood.Settings(epochs=2, batch_size=8, learning_rate=0.05, init_from=str(start_file), ema=ema)
        run = runs.Run.create("mood", settings)
        with runs.running(run):
            mood.train(settings, run, data=data)
        kernel = next(i for i, w in enumerate(start) if w.ndim == 4)  # the first conv kernel (no batch-norm statistic)
        moved[ema] = float(np.abs(core.load_model(run.dir / "model.keras").get_weights()[kernel] - start[kernel]).max())
    assert moved[0.999999] <= 0.0501 and moved[0.0] > 0.1
    with pytest.raises(core.InvalidSettings):
        mood.Settings(ema=1.0)


# ---------------------------------------------------------------- songs


def test_catalog_is_valid_and_large():
    catalog = songs.load_catalog()
    assert len(catalog) >= 150 and not catalog.duplicated(["title", "artist"]).any()


@pytest.mark.parametrize("mood_name", mood.CLASSES)
@pytest.mark.parametrize("mode", ["match", "lift"])
def test_recommendations_are_ordered_and_diverse(mood_name, mode):
    picks = songs.recommend(songs.load_catalog(), mood_name, mode, n=8)
    assert len(picks) == 8 and picks.artist.is_unique
    assert picks.score.is_monotonic_increasing
    assert picks.link.str.startswith("https://").all()


def test_fitting_tags_rank_a_song_higher():
    catalog = songs.validate(pd.DataFrame({
        "title": ["a", "b"], "artist": ["x", "y"], "year": [2000, 2000], "genre": ["pop", "pop"],
        "valence": [0.2, 0.25], "energy": [0.3, 0.3], "tags": ["calm", "sad"]}))
    assert songs.recommend(catalog, "sad", "match").title.tolist() == ["b", "a"]


def test_lift_is_happier_than_match_for_sad():
    catalog = songs.load_catalog()
    assert songs.recommend(catalog, "sad", "lift").valence.mean() > songs.recommend(catalog, "sad", "match").valence.mean() + 0.2


HEADER = "title,artist,year,genre,valence,energy,tags\n"


@pytest.mark.parametrize("csv, message", [
    (b"title,artist\nx,y\n", "Missing column.*Expected the columns title, artist"),
    (HEADER.encode() + b"x,y,2000,pop,1.5,0.5,\n", r"^Row 2, column 'valence': expected a number between 0 and 1, found '1.5'\.$"),
    (HEADER.encode() + b"a,b,2000,pop,0.5,0.5,\nx,y,2000,pop,high,0.5,\n", r"^Row 3, column 'valence'.*found 'high'"),
    (HEADER.encode() + b"x,,2000,pop,0.5,0.5,\n", r"^Row 2, column 'artist': expected a name"),
    (HEADER.encode(), "no songs"),
    (b"", "empty"),
    (b"\x81\x8d\x8f\x90\x9d", "not text in UTF-8 or Windows-1252"),
])
def test_bad_catalog_names_the_row_column_and_expectation(csv, message):
    with pytest.raises(songs.CatalogError, match=message) as exc:
        songs.load_catalog(csv)
    assert "np." not in str(exc.value) and "float64" not in str(exc.value)


ROW = "Café Society;Beyoncé;2003;pop;0,8;0,7;happy\n"


@pytest.mark.parametrize("data", [
    (HEADER + ROW.replace(";", ",").replace("0,8", "0.8").replace("0,7", "0.7")).encode("utf-8"),
    (HEADER + ROW.replace(";", ",").replace("0,8", "0.8").replace("0,7", "0.7")).encode("utf-8-sig"),
    (HEADER.replace(",", ";") + ROW).encode("cp1252"),  # a European spreadsheet's export
    (HEADER.replace(",", "\t") + ROW.replace(";", "\t")).encode("utf-8"),
])
def test_catalog_encodings_and_separators(data):
    catalog = songs.load_catalog(data)
    assert catalog.title.tolist() == ["Café Society"] and catalog.artist.tolist() == ["Beyoncé"]
    assert catalog.valence.tolist() == [0.8] and catalog.energy.tolist() == [0.7]


def test_a_phone_photo_is_read_upright_as_its_exif_orientation_says():
    """Phones store a portrait photo sideways with an EXIF Orientation tag: it was read sideways, face not found."""
    import io

    from PIL import Image

    upright = face_photo()
    stored = Image.fromarray(np.ascontiguousarray(np.rot90(upright)))  # turned a quarter left, as stored
    exif = Image.Exif()
    exif[0x0112] = 6  # "turn 90 degrees clockwise to show"
    buf = io.BytesIO()
    stored.save(buf, "JPEG", exif=exif, quality=95)
    rgb = mood.decode_image(buf.getvalue())
    assert rgb.shape == upright.shape
    assert len(mood.find_faces(rgb)) == 1
