"""Mood page: a webcam snapshot or a photo, the mood of every face, and songs for it."""

import numpy as np
import streamlit as st

from pipelines import mood, songs
from views.common import require_model, upload_limit_mb

st.title("🙂 Mood")
st.caption("Take a snapshot or upload a photo. Photos are processed in memory and never stored; the last one's "
           "reading stays while you visit the other pages.")
predict_fn, card = require_model("mood", mood.load)


@st.cache_resource(max_entries=16)
def catalog_from(data: bytes | None, version: float):
    """A catalog read once per file (the built-in one keyed on its modification time)."""
    return songs.load_catalog(data if data is not None else songs.CATALOG)


def songs_for(target: str) -> None:
    mode = st.radio("I want to", ["match", "lift"], horizontal=True, key="mood-mode", persist_state="session",
                    format_func={"match": "match my mood", "lift": "lift my mood"}.get)
    custom = st.file_uploader("Your own catalog (CSV with columns " + ", ".join(songs.COLUMNS) + ")", type=["csv"])
    catalog = None
    if custom is not None:
        try:
            catalog = catalog_from(custom.getvalue(), 0.0)
        except songs.CatalogError as exc:
            st.warning(f"Your catalog cannot be used: {exc} These songs come from the built-in catalog.")
    if catalog is None:
        catalog = catalog_from(None, songs.CATALOG.stat().st_mtime)
    picks = songs.recommend(catalog, target, mode)
    # A markdown table, not st.dataframe: a canvas-drawn data grid is more for every visitor's browser to
    # load and lay out than eight rows need.
    rows = [f"| {songs.md(t)} · {songs.md(a)} ({y}) | {songs.md(g)} | [search ↗]({link}) |"
            for t, a, y, g, link in zip(picks.title, picks.artist, picks.year, picks.genre, picks.link)]
    st.markdown("\n".join(["| song | genre | listen |", "| --- | --- | --- |", *rows]))


def new_source() -> None:
    # A photo widget shown again after the other source was used starts empty on screen, while its browser
    # side still sends its last photo: the page showed a result for a photo no longer there. New keys
    # make both start empty for real.
    st.session_state["mood-inputs"] = st.session_state.get("mood-inputs", 0) + 1
    st.session_state.pop(KEPT, None)


# The last photo's reading (the photo at its size on screen, the faces), shown again when the person comes back
# from another page: Streamlit empties the photo boxes when the page is left, and the reading went with them.
KEPT = "mood-kept"


def photo_changed(key: str) -> None:
    if st.session_state.get(key) is None:  # taken away by the person (the box's x, the camera's "Clear photo")
        st.session_state.pop(KEPT, None)


def read(photo, source: str):
    """(reading with the photo sized for the screen, caption's name) of a new photo; None after a message."""
    st.session_state.pop(KEPT, None)  # a photo that cannot be read does not bring an older one back later
    if photo.size > limit * 2**20:
        st.error(f"This file is {photo.size / 2**20:.0f} MB; the limit is {limit} MB.")
        return None
    try:
        rgb = mood.decode_image(photo.getvalue())
    except ValueError as exc:
        st.error(f"Could not read this photo: {exc}")
        return None
    reading = mood.read_photo(predict_fn, rgb)
    # The file's name: a larger file that the uploader refuses (it says why only on hover) leaves this result
    # on screen, and the name says which photo it belongs to.
    kept = {"id": photo.file_id, "source": source, "named": f"{photo.name}: " if source == "Upload" else "",
            "reading": mood.Reading(mood.for_screen(reading.image), reading.faces)}
    st.session_state[KEPT] = kept
    return kept


limit = upload_limit_mb()
source = st.radio("Photo from", ["Webcam", "Upload"], horizontal=True, label_visibility="collapsed",
                  key="mood-source", persist_state="session", on_change=new_source)
n = st.session_state.get("mood-inputs", 0)
key = f"mood-camera-{n}" if source == "Webcam" else f"mood-upload-{n}"
if source == "Webcam":
    photo = st.camera_input("Take a snapshot", key=key, on_change=photo_changed, args=(key,))
else:
    # Any type of file is taken, and one that is not a photo gets the page's message: a refused type only
    # turned red in the box, its reason in a tooltip that a phone cannot show, the last photo's reading left.
    photo = st.file_uploader("Upload a photo (JPEG, PNG, WebP, BMP or GIF)", key=key, on_change=photo_changed,
                             args=(key,))
kept = st.session_state.get(KEPT)
if photo is not None and (kept is None or kept["id"] != photo.file_id):
    kept = read(photo, source)
if kept is None or kept["source"] != source:
    if photo is None:
        st.info("Take a snapshot with your face in it. No camera, or the browser may not use it? Choose Upload "
                "above." if source == "Webcam" else "Upload a photo with a face in it.")
    st.stop()
if photo is None:
    note, forget = st.columns([4, 1], vertical_alignment="center")
    note.caption("Your last photo, kept while you were on another page: "
                 + ("take another" if source == "Webcam" else "upload another") + " to replace it.")
    # The box is empty by then, so its x cannot take this photo away.
    forget.button("Forget it", key="mood-forget", on_click=st.session_state.pop, args=(KEPT, None))

reading, named = kept["reading"], kept["named"]
left, right = st.columns([3, 2])
# At its own size, capped by the column (see mood.for_screen); the caption apart, since under the photo it set the
# photo's width (a 1x1 photo filled the caption's width).
left.image(reading.image, width="content")
left.caption(f"{named}{len(reading.faces)} face(s) found")
if not reading.faces:
    right.warning("No face found. " + ("Face the camera in good light." if source == "Webcam" else
                                       "Try a photo where a face is larger, seen from the front, in good light."))
    st.stop()
if len(reading.faces) > 1:
    right.write(f"**{len(reading.faces)} faces**, numbered on the photo.")

for i, face in enumerate(reading.faces, 1):
    with right.container(border=True):
        cols = st.columns([1, 3])
        cols[0].image(face.crop, caption=f"face {i}", width=72)
        if face.confident:
            cols[1].subheader(f"{face.mood} ({face.probs.max():.0%})")
        else:
            cols[1].subheader(f"unclear, maybe {face.mood}")
            cols[1].caption("The expression is ambiguous: every mood is below "
                            f"{mood.CONFIDENT:.0%}. Try another angle or light.")
        # Plain bars, not a plotly chart: cheap in every visitor's browser (plotly.js is megabytes to load).
        for k in np.argsort(face.probs)[::-1]:
            cols[1].progress(float(face.probs[k]), text=f"{mood.CLASSES[k]}  {face.probs[k]:.0%}")

st.divider()
st.subheader("Songs for this mood")
faces = reading.faces
who = max(range(len(faces)), key=lambda i: faces[i].box[2] * faces[i].box[3])  # the largest face, first
if len(faces) > 1:
    who = st.selectbox("For face", range(len(faces)), index=who, format_func=lambda i: f"{i + 1}: " + (
        faces[i].mood if faces[i].confident else f"unclear, maybe {faces[i].mood}"))
songs_for(faces[who].mood)

if card.get("test"):
    st.caption(f"Model: CNN {card.get('version', '')}, test accuracy "
               f"{card['test']['accuracy']:.1%} on the 7,178 FER2013 test faces.")
