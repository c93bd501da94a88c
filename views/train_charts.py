"""Plotly figures of the Training page, built once per change of the files they show.

Every builder is keyed on the files' (mtime, size) stamps (pipelines.tracker.stamp), so an idle
tab that polls redraws from the cache and never rebuilds a figure or re-reads a big file.
Legends sit below the plot, accuracy is drawn in 0-100 %, loss from 0.
"""

import plotly.graph_objects as go
import streamlit as st

from pipelines import runs, tracker

COLORS = ["#636efa", "#ef553b", "#00cc96", "#ab63fa", "#ffa15a", "#19d3f3", "#ff6692", "#b6e880", "#ff97ff",
          "#fecb52"]
LEGEND = dict(orientation="h", yanchor="top", y=-0.12, xanchor="left", x=0)  # below the plot, under the ticks


def files_stamp(run: runs.Run) -> tuple:
    return tracker.stamp(run.dir / "metrics.jsonl", run.dir / "status.json")


def _layout(fig: go.Figure, title: str, y_title: str, percent: bool, x_max: float | None, height: int = 344):
    """The x axis is epochs (said in the title, so no axis title collides with the legend below)."""
    yaxis = dict(title=y_title, rangemode="tozero")
    if percent:
        yaxis.update(range=[0, 1.0], tickformat=".0%")
    fig.update_layout(title=_title(f"{title}, by epoch"), height=height, legend=LEGEND, margin=MARGIN, yaxis=yaxis,
                      xaxis=dict(range=[0, x_max * 1.03] if x_max else None))  # room for a point at the end
    return fig


def _title(text: str) -> dict:
    """A title on its own line just above the plot, below plotly's toolbar: at the top of the figure a phone's
    toolbar covered a long one."""
    return dict(text=text, x=0, xref="paper", y=1, yref="paper", yanchor="bottom", pad=dict(b=8), font=dict(size=14))


MARGIN = dict(l=10, r=10, t=60, b=10)  # the top: toolbar (~30 px) over the title's line


@st.cache_data(max_entries=64, show_spinner=False)
def run_curves(run_dir: str, stamp: tuple, key: str, planned_epochs: int | None) -> go.Figure:
    """One metric of one run: train per batch (raw, faint; smoothed, solid) and validation per epoch."""
    c = tracker.curves(runs.Run(run_dir))
    fig = go.Figure()
    fig.add_scatter(x=c["batch_x"], y=c[f"train_{key}"], name="train (raw)", mode="lines",
                    line=dict(color=COLORS[0], width=1), opacity=0.3)
    fig.add_scatter(x=c["batch_x"], y=c[f"train_{key}_smooth"], name=f"train (smoothed {c['smoothing']})",
                    mode="lines", line=dict(color=COLORS[0], width=2))
    fig.add_scatter(x=c["epoch_x"], y=c[f"val_{key}"], name="validation (per epoch)", mode="lines+markers",
                    line=dict(color=COLORS[1], width=2))
    x_max = max([planned_epochs or 0, *c["epoch_x"], *c["batch_x"], 1])
    return _layout(fig, key, key, key == "accuracy", x_max)


@st.cache_data(max_entries=64, show_spinner=False)
def run_rates(run_dir: str, stamp: tuple) -> go.Figure:
    """Learning rate (left axis, log) and throughput in samples/s (right axis), per epoch."""
    c = tracker.curves(runs.Run(run_dir))
    fig = go.Figure()
    fig.add_scatter(x=c["epoch_x"], y=c["lr"], name="learning rate", mode="lines+markers",
                    line=dict(color=COLORS[2]))
    fig.add_scatter(x=c["epoch_x"], y=c["samples_per_s"], name="samples/s", yaxis="y2", mode="lines+markers",
                    line=dict(color=COLORS[3], dash="dot"))
    _layout(fig, "learning rate and throughput", "learning rate", False, max(c["epoch_x"], default=1), height=304)
    fig.update_layout(yaxis=dict(type="log", rangemode="normal", exponentformat="e"),
                      yaxis2=dict(title="samples/s", overlaying="y", side="right", rangemode="tozero",
                                  showgrid=False, tickmode="auto", nticks=5, tickformat="~s"))
    return fig


@st.cache_data(max_entries=16, show_spinner=False)
def compare_curves(items: tuple, key: str) -> go.Figure:
    """One metric of many runs: validation per epoch (solid, in the legend) and smoothed train (dotted,
    same colour), one colour per run. `items` is ((run_dir, label, stamp), ...)."""
    fig = go.Figure()
    for i, (run_dir, label, _stamp) in enumerate(items):
        c = tracker.curves(runs.Run(run_dir))
        color = COLORS[i % len(COLORS)]
        fig.add_scatter(x=c["epoch_x"], y=c[f"val_{key}"], name=label, mode="lines+markers",
                        line=dict(color=color), legendgroup=label, meta="val")
        fig.add_scatter(x=c["batch_x"], y=c[f"train_{key}_smooth"], name=f"{label} (train)", mode="lines",
                        line=dict(color=color, dash="dot", width=1), legendgroup=label, showlegend=False,
                        meta="train")
    return _layout(fig, f"{key}: val solid, train dotted", key, key == "accuracy", None,
                   height=324 + 24 * len(items))


@st.cache_data(max_entries=16, show_spinner=False)
def confusion_figure(card_path: str, stamp: tuple) -> go.Figure | None:
    """Row-normalised confusion matrix: each cell says its count and its share of the true class."""
    from pipelines import core

    conf = tracker.confusion(((core.read_json(card_path, {}) or {}).get("test")) or {})
    if conf is None:
        return None
    labels, n = conf["labels"], len(conf["labels"])
    text = [[f"{conf['counts'][i][j]}<br>{conf['percent'][i][j]:.0f}%" for j in range(n)] for i in range(n)]
    fig = go.Figure(go.Heatmap(z=conf["percent"], x=labels, y=labels, text=text, texttemplate="%{text}",
                               textfont=dict(size=11), colorscale="Blues", zmin=0, zmax=100, showscale=False,
                               hovertemplate="true %{y}, predicted %{x}: %{text}<extra></extra>"))
    for i in range(n):  # the diagonal (right answers) outlined
        fig.add_shape(type="rect", x0=i - 0.5, x1=i + 0.5, y0=i - 0.5, y1=i + 0.5, line=dict(color="#111", width=2))
    fig.update_layout(height=144 + 36 * n, margin=MARGIN, title=_title("confusion matrix (count, % of true class)"),
                      xaxis=dict(title="predicted", side="bottom", type="category", tickfont=dict(size=13)),
                      yaxis=dict(title="true", autorange="reversed", type="category", tickfont=dict(size=13)))
    return fig
