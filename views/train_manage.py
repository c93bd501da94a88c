"""Training page, manage a run: rename, note, download the model and its card as one zip, delete
(asks first; pipelines.tracker refuses the active model's source and a running run)."""

import streamlit as st

from pipelines import core, runs, tracker


def render(run: runs.Run) -> None:
    with st.expander("Manage this run"):
        info = tracker.meta(run)
        with st.form(f"meta-{run.id}"):
            name = st.text_input("Name", value=info.get("name", ""), key=f"name-{run.id}")
            note = st.text_area("Note", value=info.get("note", ""), key=f"note-{run.id}", height=80)
            if st.form_submit_button("Save name and note"):
                tracker.set_meta(run, name=name, note=note)
                st.session_state["flash"] = f"Saved the name and note of run {run.id}."
                st.rerun()
        left, right = st.columns(2)
        if (run.dir / "model.keras").exists():
            left.download_button("Download model + card (.zip)", data=lambda: tracker.bundle(run),
                                 file_name=f"{run.task}-{run.id}.zip", mime="application/zip",
                                 key=f"download-{run.id}", on_click="ignore")
        delete(run, right)


def delete(run: runs.Run, where) -> None:
    why = tracker.deletable(run)
    if why:
        where.caption(f"Cannot delete: {why}.")
        return
    confirm = f"delete-confirm-{run.id}"
    if not st.session_state.get(confirm):
        if where.button("Delete this run", key=f"delete-{run.id}", icon="🗑️"):
            st.session_state[confirm] = True
            st.rerun()
        return
    st.warning(f"Delete run {run.id} and all its files for good? Registry versions made from it stay.")
    yes, no = st.columns(2)
    if yes.button("Yes, delete it", key=f"delete-yes-{run.id}", type="primary"):
        st.session_state.pop(confirm)
        try:
            tracker.delete(run)
        except (core.PromotionError, OSError) as exc:
            st.error(str(exc))
            return
        st.session_state["flash"] = f"Deleted run {run.id}."
        st.rerun()
    if no.button("Keep it", key=f"delete-no-{run.id}"):
        st.session_state.pop(confirm)
        st.rerun()
