"""Training page, launch section: the new-run form.

It starts from the pipeline's own defaults for the task and architecture (runs.defaults); every
value is passed to the job explicitly, so the run uses what the form shows. A run can start
from random weights or fine-tune the active model or any registry version (`--init-from`), with
a smaller learning rate suggested. A problem is shown under the field that caused it.
"""

import os

import streamlit as st

from pipelines import core, engines, runs, tracker


def render(task: str, busy: bool) -> None:
    with st.expander("New run", expanded=not busy and not runs.list_runs(task)):
        form(task, busy)


def _error(errors: dict, field: str) -> None:
    if field in errors:
        st.error(errors[field], icon="⚠️")


def form(task: str, busy: bool) -> None:
    c0, c1 = st.columns(2)
    arch = c0.radio("Architecture", runs.archs(task), horizontal=True, key=f"arch-{task}")
    starts = runs.init_choices(task)
    start = c1.selectbox("Start from", list(starts), key=f"init-{task}",
                         help="fine-tune a registry version (same architecture) instead of random weights")
    init_from = starts[start]
    d = runs.defaults(task, arch)
    key = f"{task}-{arch}-{'ft' if init_from else 'new'}"  # other task, architecture or start: other defaults
    errors = st.session_state.get(f"errors-{task}", {})
    if errors:
        st.error(f"Nothing started: {len(errors)} setting{'s' if len(errors) > 1 else ''} to fix, marked below.")
    with st.form(f"new-run-{key}"):
        c1, c2, c3 = st.columns(3)
        with c1:
            # No min/max on the boxes: Streamlit's own range check keeps a value out of range from being sent,
            # says why only on hover, and Train then did nothing; the pipeline's check speaks under the field.
            epochs = st.number_input("Epochs", value=d["epochs"], step=1, key=f"epochs-{key}",
                                     help="from {} to {}".format(*runs.LIMITS["epochs"]))
            _error(errors, "epochs")
            batch_size = st.number_input("Batch size", value=d["batch_size"], step=1, key=f"batch-{key}",
                                         help="from {} to {}".format(*runs.LIMITS["batch_size"]))
            _error(errors, "batch_size")
        with c2:
            lr = runs.suggested_lr(d["learning_rate"], bool(init_from))
            learning_rate = st.select_slider(
                "Learning rate", runs.lr_choices(d["learning_rate"]), value=lr, format_func=tracker.fmt_lr,
                key=f"lr-{key}", help=f"log scale; the pipeline's default is {tracker.fmt_lr(d['learning_rate'])}"
                + (", fine-tuning suggests 10x smaller" if init_from else ""))
            _error(errors, "learning_rate")
            data_fraction = st.slider("Fraction of the data", *runs.LIMITS["data_fraction"],
                                      value=d["data_fraction"], key=f"fraction-{key}")
        with c3:
            augment = st.checkbox("Augmentation", value=d["augment"], key=f"augment-{key}") \
                if task in runs.CAN_AUGMENT else None
            with_feedback = st.checkbox("Include 'teach it' drawings", key=f"feedback-{key}") \
                if task == "digits" else None
        _error(errors, "init_from")
        corpus = name = None
        if task == "text":
            corpus = st.file_uploader("Corpus (plain text; default: Nietzsche)", type=["txt"])
            _error(errors, "corpus")
            name = st.text_input("Model name", value="text", help="`text` is compared on the Nietzsche benchmark; "
                                 "another name (text-sherlock) keeps its own model and benchmark")
        data_dir = st.text_input("Data folder", value=os.environ.get("DATA_DIR", ""),
                                 help="mnist.npz, fer2013.npz or text/nietzsche.txt live here")
        _error(errors, "data_dir")
        auto_promote = st.checkbox("Promote automatically if it beats the active model on the same benchmark")
        engine = engine_choice()
        submitted = st.form_submit_button("Train", type="primary", disabled=busy)
    if submitted:
        values = dict(arch=arch, epochs=int(epochs), batch_size=int(batch_size), learning_rate=float(learning_rate),
                      data_fraction=float(data_fraction), augment=augment, with_feedback=with_feedback,
                      data_dir=data_dir.strip(), auto_promote=auto_promote, name=(name or "").strip() or None,
                      init_from=init_from)
        submit(task, values, corpus, engine)


def engine_choice() -> str:
    """Where the job runs: this server, or a Ray cluster (offered with the reason when it cannot be used)."""
    reasons = engines.available()
    names = list(reasons)
    label = {"local": "this server", "ray": "Ray cluster"}
    engine = st.radio("Run on", names, index=names.index(engines.default_name()), horizontal=True,
                      format_func=lambda n: label.get(n, n) + (" (unavailable)" if reasons[n] else ""),
                      help="; ".join(f"{label.get(n, n)}: {why}" for n, why in reasons.items() if why) or None)
    return engine


def submit(task: str, values: dict, corpus, engine: str = "local") -> None:
    if corpus is not None:
        try:
            data = corpus.getvalue()
            # Named by its content too: another file of the same name must not replace one an earlier run used.
            path = core.runs_dir() / "uploads" / core.sha256_bytes(data)[:12] / os.path.basename(corpus.name)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            values["corpus"] = str(path)
        except OSError as exc:
            st.error(f"Nothing started: the corpus could not be saved in {core.runs_dir()} ({exc.strerror}).")
            return
    if errors := runs.field_errors(task, values):
        st.session_state[f"errors-{task}"] = errors
        st.rerun()
    st.session_state.pop(f"errors-{task}", None)
    try:
        run = runs.launch(task, runs.train_args(task, values), engine=engine)
    except (core.JobRunning, core.NotWritable, OSError) as exc:
        st.error(f"Nothing started: {exc}")
        return
    st.session_state["flash"] = f"Started run {run.id}."  # said by the live section, after it notices the run
    st.rerun()
