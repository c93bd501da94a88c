"""Training page, manage a run: rename, note, download the model and its card as one zip, delete
(asks first; pipelines.tracker refuses the active model's source and a running run)."""

import streamlit as st

from pipelines import core, runs, tracker


def render(run: runs.Run) -> None:
    with st.expander("Manage this run"):
        info = tracker.meta(run)
        with st.form(f"meta-{run.id}"):
            st.text_input("Name", value=info.get("name", ""), key=f"name-{run.id}")
            st.text_area("Note", value=info.get("note", ""), key=f"note-{run.id}", height=80)
            st.form_submit_button("Save name and note", on_click=save_meta, args=(run,))
        left, right = st.columns(2)
        if (run.dir / "model.keras").exists():
            left.download_button("Download model + card (.zip)", data=lambda: tracker.bundle(run),
                                 file_name=f"{run.task}-{run.id}.zip", mime="application/zip",
                                 key=f"download-{run.id}", on_click="ignore")
        delete(run, right)


def save_meta(run: runs.Run) -> None:
    """In a callback, as the buttons below: the page's title shows the new name in the same rerun."""
    tracker.set_meta(run, name=st.session_state[f"name-{run.id}"], note=st.session_state[f"note-{run.id}"])
    st.session_state["flash"] = f"Saved the name and note of run {run.id}."


def delete(run: runs.Run, where) -> None:
    """Asks first. The buttons act in callbacks, before the page reruns, so the deleted run is never
    drawn again."""
    why = tracker.deletable(run)
    if why:
        where.caption(f"Cannot delete: {why}.")
        return
    confirm = f"delete-confirm-{run.id}"
    if error := st.session_state.pop(f"delete-error-{run.id}", None):
        st.error(error)
    if not st.session_state.get(confirm):
        where.button("Delete this run", key=f"delete-{run.id}", icon="🗑️",
                     on_click=st.session_state.update, args=({confirm: True},))
        return
    st.warning(f"Delete run {run.id} and all its files for good? Registry versions made from it stay.")
    yes, no = st.columns(2)
    yes.button("Yes, delete it", key=f"delete-yes-{run.id}", type="primary", on_click=really_delete, args=(run,))
    no.button("Keep it", key=f"delete-no-{run.id}", on_click=st.session_state.pop, args=(confirm, None))


def really_delete(run: runs.Run) -> None:
    st.session_state.pop(f"delete-confirm-{run.id}", None)
    if not run.dir.exists():  # a double click: the first one deleted it
        return
    try:
        tracker.delete(run)
    except (core.PromotionError, OSError) as exc:
        st.session_state[f"delete-error-{run.id}"] = str(exc)
        return
    st.session_state["flash"] = f"Deleted run {run.id}."
