"""Training page: launch a pipeline as a background job, watch it live, compare runs, promote one
through the like-for-like gate, and roll the registry back.

Everything that changes while a run goes on lives in the polling fragment `live`; the rest of the
page is drawn again only when a run starts or ends (the fragment notices and reruns the page).
"""

import os

import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
import streamlit as st

from pipelines import core, runs, training

st.title("🏋️ Training")
st.caption("Jobs run in the background (`python -m pipelines.<task> train`) and write to runs/<task>/<run>/; "
           "closing or reloading this page does not stop them. A new model is only used once promoted.")

task = st.segmented_control("Task", runs.TASKS, default="digits", key="task") or "digits"
active = runs.active_run(task)


# ---------------------------------------------------------------- new run
def new_run_form(task: str, busy: bool) -> None:
    """The form starts from the pipeline's own defaults for the task and architecture;
    every value is passed to the job explicitly, so the run uses what the form shows."""
    arch = st.radio("Architecture", ["default", "baseline"], horizontal=True, key=f"arch-{task}")
    d = runs.defaults(task, arch)
    key = f"{task}-{arch}"  # other task or architecture: other defaults
    with st.form(f"new-run-{key}"):
        c1, c2, c3 = st.columns(3)
        epochs = c1.number_input("Epochs", *runs.LIMITS["epochs"], value=d["epochs"], key=f"epochs-{key}")
        batch_size = c2.number_input("Batch size", *runs.LIMITS["batch_size"], value=d["batch_size"],
                                     key=f"batch-{key}")
        learning_rate = c2.number_input("Learning rate", *runs.LIMITS["learning_rate"], value=d["learning_rate"],
                                        format="%.5f", key=f"lr-{key}")
        data_fraction = c3.slider("Fraction of the data", *runs.LIMITS["data_fraction"], value=d["data_fraction"],
                                  key=f"fraction-{key}")
        augment = c3.checkbox("Augmentation", value=d["augment"], key=f"augment-{key}") \
            if task in runs.CAN_AUGMENT else None
        with_feedback = c3.checkbox("Include 'teach it' drawings", key=f"feedback-{key}") \
            if task == "digits" else None
        corpus = name = None
        if task == "text":
            corpus = st.file_uploader("Corpus (plain text; default: Nietzsche)", type=["txt"])
            name = st.text_input("Model name", value="text",
                                 help="`text` is compared on the Nietzsche benchmark; another name "
                                      "(text-sherlock) keeps its own model and benchmark")
        data_dir = st.text_input("Data folder", value=os.environ.get("DATA_DIR", ""),
                                 help="mnist.npz, fer2013.npz or text/nietzsche.txt live here")
        auto_promote = st.checkbox("Promote automatically if it beats the active model on the same benchmark")
        submitted = st.form_submit_button("Train", type="primary", disabled=busy)
    if not submitted:
        return
    form = dict(arch=arch, epochs=int(epochs), batch_size=int(batch_size), learning_rate=float(learning_rate),
                data_fraction=float(data_fraction), augment=augment, with_feedback=with_feedback,
                data_dir=data_dir.strip(), auto_promote=auto_promote, name=(name or "").strip() or None)
    if corpus is not None:
        try:
            path = core.runs_dir() / "uploads" / os.path.basename(corpus.name)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(corpus.getvalue())
            form["corpus"] = str(path)
        except OSError as exc:
            st.error(f"Nothing started: the corpus could not be saved in {core.runs_dir()} ({exc.strerror}).")
            return
    if errors := runs.validate(task, form):
        st.error("Nothing started: " + "; ".join(errors))
        return
    try:
        run = runs.launch(task, runs.train_args(task, form))
    except (core.JobRunning, core.NotWritable, OSError) as exc:
        st.error(f"Nothing started: {exc}")
        return
    st.session_state["started"] = run.id
    st.rerun()


with st.expander("New run", expanded=active is None):
    new_run_form(task, busy=active is not None)
if started := st.session_state.pop("started", None):
    st.success(f"Started run {started}.")


# ---------------------------------------------------------------- live view
@st.cache_data(max_entries=8, show_spinner=False)
def curves(path: str, mtime_ns: int, size: int) -> go.Figure:
    """Loss and accuracy curves, rebuilt only when metrics.jsonl changed (keyed on its mtime and size)."""
    rows = runs.Run(os.path.dirname(path)).metrics()
    fig = go.Figure()
    batches = [r for r in rows if r["kind"] == "batch"]
    epochs = [r for r in rows if r["kind"] == "epoch"]
    steps = max((r["step"] for r in batches), default=1)
    x_batch = [r["epoch"] + r["step"] / steps for r in batches]
    x_epoch = [r["epoch"] + 1 for r in epochs]
    for key, axis in (("loss", "y"), ("accuracy", "y2")):
        fig.add_scatter(x=x_batch, y=[r.get(key) for r in batches], name=f"train {key}", yaxis=axis, mode="lines")
        fig.add_scatter(x=x_epoch, y=[r.get(f"val_{key}") for r in epochs], name=f"val {key}", yaxis=axis,
                        mode="lines+markers")
    fig.update_layout(height=320, margin=dict(l=0, r=0, t=30, b=0), xaxis_title="epoch",
                      yaxis=dict(title="loss"), yaxis2=dict(title="accuracy", overlaying="y", side="right"),
                      legend=dict(orientation="h", y=1.15))
    return fig


def metrics_chart(run: runs.Run) -> None:
    path = run.dir / "metrics.jsonl"
    try:
        stat = path.stat()
    except OSError:
        return
    st.plotly_chart(curves(str(path), stat.st_mtime_ns, stat.st_size), key="live-curves")


def evaluation(run: runs.Run) -> None:
    test = (run.card() or {}).get("test") or {}
    if not {"bits_per_char", "ngram"} <= test.keys() and not {"accuracy", "per_class"} <= test.keys():
        return  # an old or hand-made card: nothing to chart
    cols = st.columns(4)
    if "bits_per_char" in test:
        cols[0].metric("held-out bits/char", f"{test['bits_per_char']:.3f}",
                       f"{test['bits_per_char'] - test['ngram']['bits_per_char']:+.3f} vs n-gram", delta_color="inverse")
        cols[1].metric("next word in top 3", f"{test['next_word_top3']:.1%}",
                       f"{test['next_word_top3'] - test['ngram']['next_word_top3']:+.1%} vs n-gram")
        cols[2].metric("next char top-1", f"{test['next_char_top1']:.1%}")
    else:
        cols[0].metric("test accuracy", f"{test['accuracy']:.2%}")
        cols[1].metric("macro F1", f"{test['macro_f1']:.3f}")
        for i, half in enumerate(("public_test_accuracy", "private_test_accuracy")):
            if half in test:
                cols[2 + i].metric(half.replace("_", " "), f"{test[half]:.2%}")
        left, right = st.columns(2)
        f1 = pd.DataFrame(test["per_class"]).T.reset_index(names="class")
        left.plotly_chart(px.bar(f1, x="class", y="f1", title="F1 per class", height=300), key=f"f1-{run.id}")
        right.plotly_chart(px.imshow(test["confusion_matrix"], x=test["labels"], y=test["labels"], text_auto=True,
                                     labels=dict(x="predicted", y="true"), title="Confusion matrix", height=300),
                           key=f"cm-{run.id}")
    data = core.read_json(run.dir / "data.json")
    if data:
        left, right = st.columns(2)
        dist = pd.Series(data["distribution"], name="count").rename_axis("class").reset_index()
        left.plotly_chart(px.bar(dist, x="class", y="count", title="Training data by class", height=280),
                          key=f"dist-{run.id}")
        if (run.dir / "samples.png").exists():
            right.image(str(run.dir / "samples.png"), caption="samples, one row per class", width="stretch")


def registry_name(run: runs.Run) -> str:
    return (run.card() or {}).get("name") or run.task


def promote_section(run: runs.Run, where: str) -> None:
    """The gate: the comparison on the same benchmark, and a second, informed click when the
    model is worse, near chance or cannot be compared. The rules are training.promotion_gate's."""
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
        c = gate.comparison
        if c.get("verdict") == "worse":
            how = (f"It is **worse by {training.fmt_gap(c['gap'], c['score_name'])}**: this run "
                   f"{training.fmt(c['candidate'], c['score_name'])}, active {c.get('active_version') or 'model'} "
                   f"{training.fmt(c['active'], c['score_name'])} on {c.get('benchmark_name') or c.get('benchmark')}.")
        elif c.get("near_chance"):
            how = f"It scores near chance: {gate.message}"
        else:
            how = f"There is no like-for-like evidence that it is better. {gate.message}"
        st.warning(f"Promote anyway? {how} The previous model stays in the registry and can be rolled back.",
                   icon="⚠️")
        yes, no = st.columns(2)
        if yes.button("Yes, promote it anyway", key=f"yes-{where}-{run.id}", type="primary"):
            st.session_state.pop(confirm)
            do_promote(name, run, confirmed=True)
        if no.button("Cancel", key=f"cancel-{where}-{run.id}"):
            st.session_state.pop(confirm)
            st.rerun()
        return
    label = "Promote this model" if where == "live" else f"Promote run {run.id}"
    if st.button(label, type="primary", key=f"promote-{run.id}" if where == "live" else f"promote-{where}"):
        if gate.needs_confirmation:
            st.session_state[confirm] = True
            st.rerun()
        do_promote(name, run, confirmed=False)


def do_promote(name: str, run: runs.Run, confirmed: bool) -> None:
    try:
        version = training.promote_run(name, run, confirmed=confirmed)
    except (core.PromotionError, core.NotWritable) as exc:
        st.error(str(exc))
        return
    st.session_state["flash"] = f"Promoted run {run.id} as {name} {version}: the demo pages use it from now on."
    st.rerun()


@st.fragment(run_every=1.5)
def live(task: str) -> None:
    latest = runs.active_run(task) or next(iter(runs.list_runs(task)), None)
    seen = (latest.id, latest.state) if latest else None
    if st.session_state.get(f"seen-{task}", seen) != seen:  # a run started or ended: redraw the page
        st.session_state[f"seen-{task}"] = seen
        st.rerun()
    st.session_state[f"seen-{task}"] = seen
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
    if state in runs.ACTIVE_STATES:
        stop, stuck = st.columns(2)
        if stop.button("Stop", icon="⏹️", key="stop", help="training stops after the current batch and keeps the "
                       "best checkpoint; evaluation or promotion stop at once and promote nothing"):
            latest.request_stop()
            st.toast("Stopping; the active model is not touched.")
        if runs.looks_stuck(latest) and stuck.button("Mark as failed", key="abandon",
                                                          help="the job holds no lock: it is not running any more"):
            runs.abandon(latest)
            st.rerun()
    elif state in ("failed", "stopped"):
        st.warning(f"This run {state}: {status.get('error') or 'no reason recorded'}")
        st.caption("The active model was not touched.")
    metrics_chart(latest)
    with st.expander("Log", expanded=state == "failed"):
        st.code(latest.log_tail(15) or "(empty)", wrap_lines=True)
    if state == "finished":
        evaluation(latest)
        promote_section(latest, "live")


if flash := st.session_state.pop("flash", None):
    st.success(flash)
live(task)


# ---------------------------------------------------------------- registry
def registry_view(task: str) -> None:
    """Every version of each model of the task, its card, and rollback in one click."""
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
    for row in reversed(rows):
        if row["active"]:
            continue
        if st.button(f"Roll back to {row['version']}", key=f"rollback-{name}-{row['version']}",
                     help=f"make {row['version']} ({row['score'] or 'no score'}) the active {name} model"):
            try:
                core.rollback(name, row["version"])
            except (core.PromotionError, core.NotWritable) as exc:
                st.error(str(exc))
                return
            st.session_state["flash"] = f"Rolled back: {name} {row['version']} is the active model again."
            st.rerun()
    with st.expander("Model cards"):
        picked = st.selectbox("Version", [r["version"] for r in rows], index=len(rows) - 1, key=f"card-{name}")
        card = next(v["card"] for v in core.list_versions(name) if v["version"] == picked)
        st.json({k: v for k, v in card.items() if k != "history"}, expanded=1)


st.divider()
st.subheader("Models")
registry_view(task)

# ---------------------------------------------------------------- history
@st.fragment(run_every=5 if active is not None else None)
def history_table(task: str) -> None:
    """The runs table changes while a job runs (its epochs, minutes): it polls too, slower."""
    st.dataframe(pd.DataFrame([runs.summary(r) for r in runs.list_runs(task)]), hide_index=True, width="stretch")


st.divider()
st.subheader("Run history")
history = runs.list_runs(task)
if not history:
    st.caption("No runs yet.")
    st.stop()
history_table(task)
picked = st.multiselect("Overlay runs", [r.id for r in history], max_selections=2,
                        default=[r.id for r in history[:2]])
overlay = go.Figure()
for run in (r for r in history if r.id in picked):
    epochs = [r for r in run.metrics() if r["kind"] == "epoch"]
    for key in ("val_loss", "val_accuracy"):
        overlay.add_scatter(x=[r["epoch"] + 1 for r in epochs], y=[r.get(key) for r in epochs],
                            name=f"{run.id} {key}", yaxis="y2" if "acc" in key else "y", mode="lines+markers")
overlay.update_layout(height=320, xaxis_title="epoch", yaxis=dict(title="val loss"),
                      yaxis2=dict(title="val accuracy", overlaying="y", side="right"),
                      legend=dict(orientation="h", y=-0.3))
st.plotly_chart(overlay, key="overlay")
shown_live = (runs.active_run(task) or history[0]).id  # its gate is in the live view already
finished = [r for r in history if r.id != shown_live and r.state == "finished" and not r.status().get("promoted")]
if finished:
    choice = st.selectbox("Promote an earlier run", [r.id for r in finished])
    promote_section(next(r for r in finished if r.id == choice), "history")
