"""Training page, registry section: every version of each model of the task, its card, rollback."""

import pandas as pd
import streamlit as st

from pipelines import core, runs


def render(task: str, every: float | None) -> None:
    st.subheader("Models")
    st.fragment(registry_view, run_every=every)(task)


def registry_view(task: str) -> None:
    names = core.active_models(task) or [task]
    name = st.selectbox("Model", names, key=f"registry-{task}") if len(names) > 1 else names[0]
    rows = runs.version_rows(name)
    if problem := core.check_active(name):
        st.error(problem)
    if not rows:
        st.caption(f"No {name} versions yet: promote a run to make one." if not core.model_path(name).exists()
                   else f"The active {name} model is not registered yet; it becomes v1 at the next promotion.")
        return
    st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch")
    # One button per version, always in the same place, the active one greyed: the second tap of a double tap
    # lands on the version just made active, and does nothing. (With buttons for the other versions only, it
    # landed on the one that moved into its place, and the first tap was undone.)
    for row in reversed(rows):
        version = row["version"]
        label = f"{version} is active" if row["active"] else f"Make {version} active"
        if st.button(label, key=f"rollback-{name}-{version}", disabled=row["active"],
                     help=f"{version}: {row['score'] or 'no score'}"):
            try:
                core.rollback(name, version)
            except (core.PromotionError, core.NotWritable) as exc:
                st.error(str(exc))
                return
            st.session_state["flash"] = f"Rolled back: {name} {version} is the active model again."
            st.rerun(scope="app")
    with st.expander("Model cards"):
        picked = st.selectbox("Version", [r["version"] for r in rows], index=len(rows) - 1, key=f"card-{name}")
        card = next(v["card"] for v in core.list_versions(name) if v["version"] == picked)
        st.json({k: v for k, v in card.items() if k != "history"}, expanded=1)
