"""Training page, run details: any run's story, live while it runs (the fragment polls then).

Curves (train per batch raw and smoothed, validation per epoch), learning rate and throughput,
the settings, the model card, a readable confusion matrix with the per-class table, and the
model's mistakes (written at evaluation time: the page only reads mistakes.json/.png).
"""

import html

import pandas as pd
import streamlit as st

from pipelines import core, runs, tracker
from views import train_charts, train_manage
from views.train_promote import promote_section


def render(task: str, picked: list[str], every: float | None) -> None:
    if not picked:
        return
    st.subheader("Run details")
    run_id = st.selectbox("Details of", picked, index=len(picked) - 1,  # the run picked last
                          key=f"details-{task}-{len(picked)}") if len(picked) > 1 else picked[0]
    run = runs.Run(core.runs_dir() / task / run_id)
    if not run.dir.is_dir():
        st.caption(f"Run {run_id} is gone.")
        return
    busy = run.state in runs.ACTIVE_STATES
    st.fragment(details, run_every=every if busy else None)(run)
    train_manage.render(run)


def details(run: runs.Run) -> None:
    r = tracker.row(run)
    title = f"**{r['name'] or run.id}** · {r['status']}" + (f" · {r['score']} on {r['benchmark']}" if r["score"] else "")
    st.markdown(title)
    if r["note"]:
        st.caption(r["note"])
    curves_view(run)
    card = run.card() or {}
    tab_eval, tab_mistakes, tab_settings, tab_data = st.tabs(["Evaluation", "Mistakes", "Settings and card", "Data"])
    with tab_eval:
        evaluation(run, card)
    with tab_mistakes:
        mistakes(run)
    with tab_settings:
        # A line above the table: on a touch screen its toolbar (always shown there) covered the tab strip, and
        # "Data" could not be tapped.
        st.caption("The settings this run used, then its model card.")
        st.dataframe(pd.DataFrame([{"setting": k, "value": str(v)} for k, v in run.settings().items()]),
                     hide_index=True, width="stretch")
        st.json({k: v for k, v in card.items() if k not in ("history", "test")}, expanded=1)
    with tab_data:
        data_view(run)


def curves_view(run: runs.Run) -> None:
    stamp = train_charts.files_stamp(run)
    if stamp[0] is None:
        st.caption("No metrics yet.")
        return
    planned = run.settings().get("epochs")
    left, right = st.columns(2)
    left.plotly_chart(train_charts.run_curves(str(run.dir), stamp, "loss", planned), key=f"loss-{run.id}")
    right.plotly_chart(train_charts.run_curves(str(run.dir), stamp, "accuracy", planned), key=f"acc-{run.id}")
    st.caption(f"Train: every logged batch, Keras' running average since the start of its epoch (faint), "
               f"and smoothed (exponential, weight {tracker.SMOOTHING}). Validation: once per epoch. "
               "x: epochs (1.5 = half way through epoch 2).")
    if tracker.curves(run)["epoch_x"]:  # before the first epoch ends it would be empty axes
        st.plotly_chart(train_charts.run_rates(str(run.dir), stamp), key=f"rates-{run.id}")
    else:
        st.caption("Learning rate and throughput: drawn once the first epoch ends.")


NOT_EVALUATED = {"stopped": "Not evaluated: the run was stopped before its end (its best checkpoint is kept).",
                 "failed": "Not evaluated: the run failed (why: above, and in its log)."}


def evaluation(run: runs.Run, card: dict) -> None:
    test = card.get("test") or {}
    if run.state == "finished" and run.id != getattr(next(iter(runs.list_runs(run.task)), None), "id", None):
        promote_section(run, "details")
    if "bits_per_char" in test:
        cols = st.columns(3)
        cols[0].metric("held-out bits/char", f"{test['bits_per_char']:.3f}")
        cols[1].metric("next word in top 3", f"{test.get('next_word_top3', 0):.1%}")
        cols[2].metric("next char top-1", f"{test.get('next_char_top1', 0):.1%}")
        return
    if "accuracy" not in test:
        st.caption(NOT_EVALUATED.get(run.state, "No evaluation yet (it is written when the run finishes)."))
        return
    cols = st.columns(4)
    cols[0].metric("test accuracy", f"{test['accuracy']:.2%}")
    cols[1].metric("macro F1", f"{test.get('macro_f1', 0):.3f}")
    for i, half in enumerate(("public_test_accuracy", "private_test_accuracy")):
        if half in test:
            cols[2 + i].metric(half.replace("_", " "), f"{test[half]:.2%}")
    card_file = run.dir / "card.json"
    fig = train_charts.confusion_figure(str(card_file), tracker.stamp(card_file))
    if fig is not None:
        st.plotly_chart(fig, key=f"cm-{run.id}")
        table = pd.DataFrame(tracker.confusion(test)["per_class"])
        st.dataframe(table, hide_index=True, width="stretch",
                     column_config={k: st.column_config.NumberColumn(format="%.3f")
                                    for k in ("precision", "recall", "f1")})


def mistakes(run: runs.Run) -> None:
    found = tracker.mistakes(run)
    if not found:
        st.caption("No mistakes recorded: they are written when a run finishes (runs from before this "
                   "feature have none).")
        return
    if found["kind"] == "images":
        st.caption(f"{found['n_wrong']:,} of {found['n']:,} test images wrong; the most confident mistakes first. "
                   "Each tile: true > predicted, and the model's confidence.")
        if (run.dir / tracker.MISTAKES_PNG).exists():
            st.image(str(run.dir / tracker.MISTAKES_PNG), width="content")
        with st.expander("as a table"):
            st.dataframe(pd.DataFrame(found["items"]), hide_index=True, width="stretch")
        return
    st.caption("Held-out lines: the characters the model found most surprising are highlighted "
               "(darker = more bits).")
    for line in found.get("lines", []):
        st.html(highlight(line))
    if found.get("completions"):
        st.caption("Sample completions (temperature 0.6) of held-out prompts, the model's part in bold:")
    for c in found.get("completions", []):
        st.html(f"<div style='font-family:monospace;white-space:pre-wrap;word-break:break-word'>…"
                f"{html.escape(c['prompt'][-40:])}<b>{html.escape(c['completion'])}</b></div>")


def highlight(line: dict) -> str:
    marks = tracker.surprising(line)
    out = []
    for i, ch in enumerate(line["text"]):
        esc = html.escape(ch)
        if i in marks:
            bits = line["bits"][i]
            esc = (f"<mark title='{bits:.1f} bits' style='background:rgba(239,85,59,{min(0.25 + bits / 16, 0.9):.2f});"
                   f"border-radius:2px'>{esc}</mark>")
        out.append(esc)
    return ("<div style='font-family:monospace;white-space:pre-wrap;word-break:break-word;margin:4px 0'>"
            + "".join(out) + "</div>")


def data_view(run: runs.Run) -> None:
    data = core.read_json(run.dir / "data.json")
    if not data:
        st.caption("No data summary for this run.")
        return
    dist = pd.Series(data["distribution"], name="count").rename_axis("class").reset_index()
    st.bar_chart(dist, x="class", y="count", height=220)
    if (run.dir / "samples.png").exists():
        st.image(str(run.dir / "samples.png"), caption="training samples, one row per class", width="content")
