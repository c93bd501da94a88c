"""The promotion gate on the Training page: the comparison on the same benchmark, and a second,
informed click when the model is worse, near chance or cannot be compared. The rules are
pipelines.training.promotion_gate's; this file only draws them."""

import streamlit as st

from pipelines import core, runs, training


def registry_name(run: runs.Run) -> str:
    return (run.card() or {}).get("name") or run.task


def promote_section(run: runs.Run, where: str) -> None:
    name = registry_name(run)
    status = run.status()
    if status.get("promoted"):
        st.success(f"This run's model is the active {name} model." if (core.active_card(name) or {}).get("run") ==
                   run.id else f"This run was promoted earlier ({status.get('version', '')}).")
        return
    if status.get("promote_error"):
        st.error(f"Automatic promotion failed: {status['promote_error']}")
    gate = training.promotion_gate(name, run)
    if not gate.allowed:
        st.caption(gate.message)
        return
    st.markdown(f"**Compared with the active model:** {gate.message}")
    confirm = f"confirm-{where}-{run.id}"
    if st.session_state.get(confirm):
        confirmation(name, run, gate, where, confirm)
        return
    label = "Promote this model" if where == "live" else f"Promote run {run.id}"
    if st.button(label, type="primary", key=f"promote-{run.id}" if where == "live" else f"promote-{where}-{run.id}"):
        if gate.needs_confirmation:
            st.session_state[confirm] = True
            st.rerun()
        do_promote(name, run, confirmed=False)


def confirmation(name: str, run: runs.Run, gate: training.Gate, where: str, confirm: str) -> None:
    c = gate.comparison
    if c.get("guard_failed"):
        how = gate.message
    elif c.get("verdict") == "worse":
        how = (f"It is **worse by {training.fmt_gap(c['gap'], c['score_name'])}**: this run "
               f"{training.fmt(c['candidate'], c['score_name'])}, active {c.get('active_version') or 'model'} "
               f"{training.fmt(c['active'], c['score_name'])} on {c.get('benchmark_name') or c.get('benchmark')}.")
    elif c.get("near_chance"):
        how = f"It scores near chance: {gate.message}"
    else:
        how = f"There is no like-for-like evidence that it is better. {gate.message}"
    st.warning(f"Promote anyway? {how} The previous model stays in the registry and can be rolled back.", icon="⚠️")
    yes, no = st.columns(2)
    if yes.button("Yes, promote it anyway", key=f"yes-{where}-{run.id}", type="primary"):
        st.session_state.pop(confirm)
        do_promote(name, run, confirmed=True)
    if no.button("Cancel", key=f"cancel-{where}-{run.id}"):
        st.session_state.pop(confirm)
        st.rerun()


def do_promote(name: str, run: runs.Run, confirmed: bool) -> None:
    try:
        version = training.promote_run(name, run, confirmed=confirmed)
    except (core.PromotionError, core.NotWritable) as exc:
        st.error(str(exc))
        return
    st.session_state["flash"] = f"Promoted run {run.id} as {name} {version}: the demo pages use it from now on."
    st.rerun(scope="app")
