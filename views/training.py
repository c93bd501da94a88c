"""Training page: an experiment tracker for the three pipelines.

A short page that calls its sections, each in its own file and owning its fragment:
launch form (train_launch), live run (train_live), run browser (train_runs), run details
(train_details, with train_manage), compare (train_compare) and registry (train_registry).
The live fragment always polls (slowly when idle) and reruns the page when a run starts or
ends; the other sections poll only while a job runs. Rules live in pipelines (runs, tracker,
training); figures are cached on the files they show (train_charts).
"""

import streamlit as st

from pipelines import runs
from views import train_compare, train_details, train_launch, train_live, train_registry, train_runs

st.title("🏋️ Training")
st.caption("Jobs run in the background (`python -m pipelines.<task> train`) and write to runs/<task>/<run>/; "
           "closing or reloading this page does not stop them. A new model is only used once promoted.")

# The task is in the link, so a reload or a shared link opens it (a pick replaces the link: Back leaves the page);
# it stays across pages; a tap on the task shown keeps it (it left no task highlighted). Streamlit's own binding:
# the page's copy of the link went stale on Back, and a page change carried "?task=" to the next page.
task = st.segmented_control("Task", runs.TASKS, key="task", default="digits", required=True,
                            bind="query-params", persist_state="session")

busy = runs.active_run(task) is not None
every = train_live.BUSY_POLL_S * 2 if busy else None  # sections other than the live one poll only while a job runs

train_launch.render(task, busy)
train_live.render(task, busy)
st.divider()
picked = train_runs.render(task, every)
train_compare.render(task, picked, every)
train_details.render(task, picked, every)
st.divider()
train_registry.render(task, every)
