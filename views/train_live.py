"""Training page, live section: the task's running (or latest) run, polled in its own fragment.

It polls fast while a job runs and slowly when idle (to notice a run started from a terminal);
when a run starts or ends it reruns the whole page, so the run browser, compare and registry
refresh too. Progress, stage, Stop, the log and the latest run's promotion gate live here.
"""

from contextlib import suppress

import streamlit as st
from streamlit.errors import StreamlitAPIException

from pipelines import engines, runs
from views.train_promote import promote_section

IDLE_POLL_S, BUSY_POLL_S = 10.0, 1.5


def render(task: str, busy: bool) -> None:
    st.fragment(live, run_every=BUSY_POLL_S if busy else IDLE_POLL_S)(task)


def live(task: str) -> None:
    latest = runs.active_run(task) or next(iter(runs.list_runs(task)), None)
    seen = (latest.id, latest.state) if latest else None
    before = st.session_state.get(f"seen-{task}", seen)
    if before != seen:  # a run started or ended: redraw the page
        st.session_state[f"seen-{task}"] = seen
        if latest and (before is None or before[0] != latest.id):  # a new run: open its details
            with suppress(StreamlitAPIException):
                st.session_state[f"picked-{task}"] = [latest.id]
        st.rerun(scope="app")
    st.session_state[f"seen-{task}"] = seen
    if flash := st.session_state.pop("flash", None):  # after the check above: a rerun there would lose it
        st.success(flash)
    if latest is None:
        st.info(f"No {task} runs yet: start one above, or from a terminal with `python -m pipelines.{task} train`.")
        return
    status = latest.status()
    state = status["state"]
    stage = status.get("stage") if state in runs.ACTIVE_STATES else ""
    st.subheader(f"Run {latest.id}: {state}" + (f" ({stage})" if stage else ""))
    fraction, left = runs.progress(latest)
    fraction = 1.0 if state == "finished" else fraction
    eta = f", about {left / 60:.1f} min left" if left is not None and state in runs.ACTIVE_STATES else ""
    st.progress(fraction, text=f"{fraction:.0%}{eta}")
    verb = "Runs" if state in runs.ACTIVE_STATES else "Ran"
    st.caption(f"{verb} on {engines.where(latest)['label']}." + (f" {status['note']}" if status.get("note") else ""))
    if state in runs.ACTIVE_STATES:
        controls(latest)
    elif state in ("failed", "stopped"):
        st.warning(f"This run {state}: {status.get('error') or 'no reason recorded'}")
        st.caption("The active model was not touched.")
    with st.expander("Log", expanded=state == "failed"):
        st.code(engines.log_tail(latest, 15) or "(empty)", wrap_lines=True)
    if state == "finished":
        promote_section(latest, "live")


def controls(run: runs.Run) -> None:
    stop, stuck = st.columns(2)
    if stop.button("Stop", icon="⏹️", key="stop", help="training stops after the current batch and keeps the "
                   "best checkpoint; evaluation or promotion stop at once and promote nothing"):
        run.request_stop()
        st.toast("Stopping; the active model is not touched.")
    if runs.looks_stuck(run) and stuck.button("Mark as failed", key="abandon",
                                              help="the job holds no lock: it is not running any more"):
        runs.abandon(run)
        st.rerun(scope="app")
