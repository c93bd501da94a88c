"""Training page: launch a pipeline as a background job, watch it live, compare runs, promote one."""

import os

import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
import streamlit as st

from pipelines import core, runs

st.title("🏋️ Training")
st.caption("Jobs run in the background (`python -m pipelines.<task> train`) and write to runs/<task>/<run>/; "
           "closing or reloading this page does not stop them. A new model is only used once promoted.")

task = st.segmented_control("Task", runs.TASKS, default="digits", key="task") or "digits"
active = runs.active_run(task)

# ---------------------------------------------------------------- new run
with st.expander("New run", expanded=active is None), st.form("new-run"):
    c1, c2, c3 = st.columns(3)
    arch = c1.radio("Architecture", ["default", "baseline"], horizontal=True)
    epochs = c1.number_input("Epochs", *runs.LIMITS["epochs"], value=3)
    batch_size = c2.number_input("Batch size", *runs.LIMITS["batch_size"], value=128)
    learning_rate = c2.number_input("Learning rate", *runs.LIMITS["learning_rate"], value=2e-3, format="%.5f")
    data_fraction = c3.slider("Fraction of the data", *runs.LIMITS["data_fraction"], value=1.0)
    augment = c3.checkbox("Augmentation", value=True, disabled=task not in runs.CAN_AUGMENT)
    with_feedback = c3.checkbox("Include 'teach it' drawings", disabled=task != "digits")
    corpus = st.file_uploader("Corpus (plain text; default: Nietzsche)", type=["txt"], disabled=task != "text")
    data_dir = st.text_input("Data folder", value=os.environ.get("DATA_DIR", ""),
                             help="mnist.npz, fer2013.npz or text/nietzsche.txt live here")
    auto_promote = st.checkbox("Promote automatically if it beats the active model")
    submitted = st.form_submit_button("Train", type="primary", disabled=active is not None)

if submitted:
    form = dict(arch=arch, epochs=int(epochs), batch_size=int(batch_size), learning_rate=float(learning_rate),
                data_fraction=float(data_fraction), augment=augment, with_feedback=with_feedback,
                data_dir=data_dir.strip(), auto_promote=auto_promote)
    if corpus is not None:
        path = core.runs_dir() / "uploads" / os.path.basename(corpus.name)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(corpus.getvalue())
        form["corpus"] = str(path)
    if errors := runs.validate(task, form):
        st.error("Nothing started: " + "; ".join(errors))
    else:
        try:
            active = runs.launch(task, runs.train_args(task, form))
            st.success(f"Started run {active.id}.")
        except RuntimeError as exc:
            st.error(str(exc))


# ---------------------------------------------------------------- live view
def curves(rows: list[dict]) -> go.Figure:
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


def evaluation(run: runs.Run) -> None:
    card = run.card()
    if not card:
        return
    test = card["test"]
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


@st.fragment(run_every=1.5)
def live(task: str) -> None:
    latest = runs.active_run(task) or next(iter(runs.list_runs(task)), None)
    if latest is None:
        st.info(f"No {task} runs yet: start one above, or from a terminal with `python -m pipelines.{task} train`.")
        return
    status = latest.status()
    state = status["state"]
    st.subheader(f"Run {latest.id}: {state}")
    fraction, left = runs.progress(latest)
    eta = f", about {left / 60:.1f} min left" if left is not None and state in runs.ACTIVE_STATES else ""
    st.progress(fraction, text=f"{fraction:.0%}{eta}")
    if state in runs.ACTIVE_STATES:
        if st.button("Stop after this batch", icon="⏹️", key="stop"):
            latest.request_stop()
            st.toast("Stopping after the current batch; the best checkpoint is kept.")
    elif state in ("failed", "stopped"):
        st.warning(f"{state}: {status.get('error', '')}. The active model was not touched.")
    rows = latest.metrics()
    if rows:
        st.plotly_chart(curves(rows), key="live-curves")
    with st.expander("Log", expanded=state == "failed"):
        st.code(latest.log_tail(15) or "(empty)")
    if state == "finished":
        evaluation(latest)
        if not status.get("promoted"):
            if st.button("Promote this model", type="primary", key=f"promote-{latest.id}"):
                core.promote(task, latest.dir)
                latest.set_status("finished", promoted=True)
                st.success("Promoted: the demo page uses it from its next run; the previous model is in models/archive/.")
        else:
            st.success("This run's model is the active one." if (core.active_card(task) or {}).get("run") == latest.id
                       else "This run was promoted earlier.")


live(task)

# ---------------------------------------------------------------- history
st.divider()
st.subheader("Run history")
history = runs.list_runs(task)
if not history:
    st.caption("No runs yet.")
    st.stop()
st.dataframe(pd.DataFrame([runs.summary(r) for r in history]), hide_index=True, width="stretch")
picked = st.multiselect("Overlay runs", [r.id for r in history], max_selections=2,
                        default=[r.id for r in history[:2]])
overlay = go.Figure()
for run in (r for r in history if r.id in picked):
    epochs = [r for r in run.metrics() if r["kind"] == "epoch"]
    for key in ("val_loss", "val_accuracy"):
        overlay.add_scatter(x=[r["epoch"] + 1 for r in epochs], y=[r.get(key) for r in epochs],
                            name=f"{run.id} {key}", yaxis="y2" if "acc" in key else "y", mode="lines+markers")
overlay.update_layout(height=320, xaxis_title="epoch", yaxis=dict(title="val loss"),
                      yaxis2=dict(title="val accuracy", overlaying="y", side="right"))
st.plotly_chart(overlay, key="overlay")
finished = [r for r in history if r.state == "finished" and not r.status().get("promoted")]
if finished:
    choice = st.selectbox("Promote an earlier run", [r.id for r in finished])
    if st.button("Promote", key="promote-history"):
        run = next(r for r in finished if r.id == choice)
        core.promote(task, run.dir)
        run.set_status("finished", promoted=True)
        st.success(f"Run {choice} is now the active {task} model.")
