"""Training page, compare: any number of runs overlaid (legend below the plot, accuracy in %,
loss from 0), their final metrics, and only the settings that differ (pipelines.tracker.compare)."""

import pandas as pd
import streamlit as st

from pipelines import core, runs, tracker
from views import train_charts


def render(task: str, picked: list[str], every: float | None) -> None:
    if len(picked) < 2:
        return
    st.subheader(f"Compare {len(picked)} runs")
    st.fragment(compare, run_every=every)(task, tuple(picked))


def compare(task: str, picked: tuple) -> None:
    chosen = [runs.Run(core.runs_dir() / task / r) for r in picked]
    chosen = [r for r in chosen if r.dir.is_dir()]
    labels = {r.id: tracker.label(tracker.row(r)) for r in chosen}
    items = tuple((str(r.dir), labels[r.id], train_charts.files_stamp(r)) for r in chosen)
    left, right = st.columns(2)
    left.plotly_chart(train_charts.compare_curves(items, "loss"), key="compare-loss")
    right.plotly_chart(train_charts.compare_curves(items, "accuracy"), key="compare-accuracy")
    data = tracker.compare(chosen)
    metrics = pd.DataFrame(data["metrics"]).drop(columns=["score_name"])
    metrics["run"] = [labels[r] for r in metrics["run"]]
    st.dataframe(metrics, hide_index=True, width="stretch",
                 column_config={k: st.column_config.NumberColumn(format="%.4f")
                                for k in ("val_loss", "val_accuracy", "best_val_accuracy", "score")})
    if data["diff"]:
        diff = pd.DataFrame({"setting": list(data["diff"]),
                             **{labels[r]: [str(v[i]) for v in data["diff"].values()]
                                for i, r in enumerate(data["runs"])}})
        st.markdown("**Settings that differ**")
        st.dataframe(diff, hide_index=True, width="stretch")
    else:
        st.caption("These runs used the same settings.")
    if data["same"]:
        st.caption("Same in all: " + ", ".join(f"{k}={'none' if v in ('', None) else v}" for k, v in data["same"].items()))
