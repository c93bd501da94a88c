"""AppTest of the mood page: no model, a face, no face, several faces, corrupt files, catalogs."""

import numpy as np
from conftest import ROOT, face_photo, jpeg
from streamlit.testing.v1 import AppTest

PAGE = str(ROOT / "views/mood.py")


def run_page():
    return AppTest.from_file(PAGE, default_timeout=60).run()


def snapshot(at, data: bytes):
    return at.camera_input[0].set_value(("shot.jpg", data, "image/jpeg")).run()


def upload(at, name: str, data: bytes, mime="image/jpeg"):
    at.radio[0].set_value("Upload").run()
    return at.file_uploader[0].set_value((name, data, mime)).run()


def song_rows(at) -> list[str]:
    """The rows of the songs table (a markdown table: song, genre, listen link)."""
    table = next(m.value for m in at.markdown if m.value.startswith("| song | genre | listen |"))
    return table.splitlines()[2:]


def test_no_model_gives_a_clear_message():
    at = run_page()
    assert not at.exception and "No trained model" in at.info[0].value


def test_a_face_gets_a_mood_and_songs(tiny_mood_model, monkeypatch):
    monkeypatch.setenv("MODELS_DIR", str(tiny_mood_model[2]))
    at = snapshot(run_page(), jpeg(face_photo()))
    assert not at.exception
    assert at.subheader[0].value.split(" ")[0] in {"angry", "disgust", "fear", "happy", "sad", "surprise", "neutral", "unclear,"}
    assert len(song_rows(at)) == 8 and all("[search ↗](https://www.youtube.com/results?" in r for r in song_rows(at))
    assert "never stored" in at.caption[0].value


def test_upload_with_two_faces_reads_both(tiny_mood_model, monkeypatch):
    monkeypatch.setenv("MODELS_DIR", str(tiny_mood_model[2]))
    photo = np.concatenate([face_photo(), face_photo()], 1)
    at = upload(run_page(), "two.jpg", jpeg(photo))
    assert not at.exception
    assert any("2 faces" in m.value for m in at.markdown)
    assert len(at.subheader) == 3  # two faces and "Songs for this mood"


def test_songs_start_with_the_largest_face(tiny_mood_model, monkeypatch):
    from test_mood import two_faces_small_then_large

    monkeypatch.setenv("MODELS_DIR", str(tiny_mood_model[2]))
    at = upload(run_page(), "two.jpg", jpeg(two_faces_small_then_large()))
    assert not at.exception and at.selectbox[0].value == 1  # face 2, on the right, is the larger one
    assert at.selectbox[0].format_func(1).startswith("2: ")


def test_photo_without_a_face(tiny_mood_model, monkeypatch):
    monkeypatch.setenv("MODELS_DIR", str(tiny_mood_model[2]))
    at = snapshot(run_page(), jpeg(np.full((480, 640, 3), 90, np.uint8)))
    assert not at.exception and "No face found" in at.warning[0].value


def test_corrupt_upload(tiny_mood_model, monkeypatch):
    monkeypatch.setenv("MODELS_DIR", str(tiny_mood_model[2]))
    at = upload(run_page(), "broken.jpg", b"\xff\xd8\xff this is not a jpeg")
    assert not at.exception and "Could not read this photo" in at.error[0].value


def test_bad_catalog_is_named_and_the_built_in_one_is_used(tiny_mood_model, monkeypatch):
    monkeypatch.setenv("MODELS_DIR", str(tiny_mood_model[2]))
    at = snapshot(run_page(), jpeg(face_photo()))
    at.file_uploader[0].set_value(("songs.csv", b"title,artist\nx,y\n", "text/csv")).run()
    assert not at.exception and "Missing column" in at.warning[0].value
    assert "built-in catalog" in at.warning[0].value and len(song_rows(at)) == 8


def test_a_semicolon_cp1252_catalog_is_read(tiny_mood_model, monkeypatch):
    monkeypatch.setenv("MODELS_DIR", str(tiny_mood_model[2]))
    at = snapshot(run_page(), jpeg(face_photo()))
    data = "title;artist;year;genre;valence;energy;tags\nCafé;Beyoncé;2003;pop;0,5;0,5;calm\n".encode("cp1252")
    at.file_uploader[0].set_value(("songs.csv", data, "text/csv")).run()
    assert not at.exception and not at.warning
    assert [r.split(" | ")[0] for r in song_rows(at)] == ["| Café · Beyoncé (2003)"]


def test_catalog_text_is_shown_as_itself(tiny_mood_model, monkeypatch):
    monkeypatch.setenv("MODELS_DIR", str(tiny_mood_model[2]))
    at = snapshot(run_page(), jpeg(face_photo()))
    data = b"title,artist,year,genre,valence,energy,tags\n*Hits* | [x](y),$5 <b>,2003,pop,0.5,0.5,calm\n"
    at.file_uploader[0].set_value(("songs.csv", data, "text/csv")).run()
    assert not at.exception and not at.warning
    assert song_rows(at)[0].startswith(r"| \*Hits\* \| \[x\]\(y\) · \$5 \<b\> (2003) | pop |")


def test_the_upload_limit_is_the_servers(tiny_mood_model, monkeypatch):
    import tomllib

    monkeypatch.setenv("MODELS_DIR", str(tiny_mood_model[2]))
    limit = tomllib.loads((ROOT / ".streamlit/config.toml").read_text())["server"]["maxUploadSize"]
    at = upload(run_page(), "huge.jpg", b"\xff\xd8" + b"0" * (limit * 2**20 + 1))
    assert not at.exception and f"the limit is {limit} MB" in at.error[0].value


def test_without_a_photo_the_page_says_where_to_go_without_a_camera(tiny_mood_model, monkeypatch):
    monkeypatch.setenv("MODELS_DIR", str(tiny_mood_model[2]))
    at = run_page()
    assert not at.exception and "No camera" in at.info[0].value and "Choose Upload" in at.info[0].value
