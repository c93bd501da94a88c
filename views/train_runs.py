"""Training page, run browser: every run of the task, newest first, and the runs picked to open
or compare. The table polls while a job runs; the picker is outside the fragment so a new
choice redraws the details and compare sections."""

import pandas as pd
import streamlit as st

from pipelines import tracker

COLUMNS = ["run", "status", "name", "score", "model", "lr", "batch", "epochs", "of", "minutes", "arch", "fine-tuned",
           "note", "error"]  # what tells runs apart first: a phone shows the left columns


def render(task: str, every: float | None) -> list[str]:
    st.subheader("Runs")
    rows = tracker.rows(task)
    if not rows:
        st.caption("No runs yet.")
        return []
    every_task = st.toggle("Show the runs of every task", key="runs-all-tasks")
    st.fragment(table, run_every=every)(None if every_task else task)
    labels = {r["run"]: tracker.label(r) for r in rows}
    key = f"picked-{task}"
    if key in st.session_state:  # a deleted run leaves the choice
        st.session_state[key] = [r for r in st.session_state[key] if r in labels]
    return st.multiselect("Open or compare runs", list(labels), default=[rows[0]["run"]] if key not in
                          st.session_state else None, format_func=labels.get, key=key,
                          help="one run: its details; several: compared side by side")


def run_frame(rows: list[dict], every_task: bool) -> pd.DataFrame:
    """The table's rows; a number a run does not have (an ensemble's batch, a running run's minutes) blank, not
    "None". Those columns are text, so that the table stays one Arrow type per column."""
    frame = pd.DataFrame(rows, columns=["task", *COLUMNS] if every_task else COLUMNS)
    for column in ("batch", "of", "minutes"):
        frame[column] = [v if isinstance(v, str) else "" if v is None or v != v else f"{v:g}" for v in frame[column]]
    return frame


def table(task: str | None) -> None:
    rows = tracker.rows(task)
    frame = run_frame(rows, every_task=task is None)
    st.dataframe(frame, hide_index=True, width="stretch", height=min(38 + 35 * len(rows), 400),
                 column_config={"run": st.column_config.TextColumn(pinned=True),
                                "note": st.column_config.TextColumn(width="medium"),
                                "model": st.column_config.TextColumn("model", help="active: the model in use now; "
                                                                     "was: registry versions made from this run")})
    st.caption(f"{len(rows)} run{'s' if len(rows) != 1 else ''}; score on the task's fixed benchmark; "
               "`python -m pipelines.runs list` shows the same.")
