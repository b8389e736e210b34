"""Plotly figures, one function per chart; each takes the trial table and returns a figure, drawing nothing itself.

Every point carries its trial number in ``customdata[0]`` so a click on any chart can open that trial.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.colors import qualitative

from autopeft.objectives import MEASUREMENTS
from autopeft.spec import SearchSpec
from dashboard import analysis

# Red is kept for infeasible points and failures, near-black for baselines. D3's nine others, then fourteen of Dark24's
# that differ from them: a search over every built-in method (twenty) draws each in its own colour.
PALETTE = [c for c in qualitative.D3 if c.upper() != "#D62728"] + [
    "#DA16FF", "#B68100", "#750D86", "#511CFB", "#00A08B", "#6C7C32", "#778AAE", "#862A16", "#620042", "#1616A7",
    "#6C4516", "#0D2A63", "#A777F1", "#B2828D"]
FAINT = "rgba(120,120,120,0.55)"
LAYOUT = {"template": "plotly_white", "margin": {"l": 10, "r": 10, "t": 40, "b": 10},
          "legend": {"orientation": "h", "yanchor": "bottom", "y": 1.02, "xanchor": "left", "x": 0}}


def method_colours(methods: list[str]) -> dict[str, str]:
    return {m: PALETTE[i % len(PALETTE)] for i, m in enumerate(sorted(set(methods)))}


def _label(name: str, spec: SearchSpec | None = None) -> str:
    if spec is not None and name in spec.objective_names:
        arrow = "↑" if analysis.sign(spec, name) > 0 else "↓"
        return f"{name} {arrow}"
    return name


def _format(name: str) -> str:
    """d3 number format for a measurement in hover labels: counts whole, fractions and correlations to 4 places."""
    unit = MEASUREMENTS[name].unit if name in MEASUREMENTS else ""
    return {"parameters": ",.0f", "bytes": ",.0f", "fraction": ".4f", "coefficient": ".4f",
            "squared target units": ".4f"}.get(unit, ",.2f")


def _hover(x: str, y: str) -> str:
    return ("<b>trial %{customdata[0]}</b> (%{customdata[1]})<br>%{customdata[2]}<br>"
            f"{x}: %{{x:{_format(x)}}}<br>{y}: %{{y:{_format(y)}}}<extra></extra>")


def _custom(frame: pd.DataFrame) -> np.ndarray:
    return frame[["number", "state", "configuration"]].to_numpy(dtype=object)


def step_line(points: pd.DataFrame, x: str, y: str, spec: SearchSpec) -> tuple[list[float], list[float]]:
    """The attainment staircase through the front points: what is reachable at each x."""
    ordered = points.sort_values(x, ascending=analysis.sign(spec, x) < 0)
    xs: list[float] = []
    ys: list[float] = []
    for px, py in zip(ordered[x], ordered[y]):
        if xs:
            xs.append(px)
            ys.append(ys[-1])
        xs.append(px)
        ys.append(py)
    return xs, ys


def pareto(trials: pd.DataFrame, spec: SearchSpec, x: str, y: str, highlight: list[int] | None = None,
           chance: dict[str, float] | None = None, untouched: dict[str, float] | None = None) -> go.Figure:
    """Trials on two measurements: the front by method with its staircase, the rest greyed by why they are not;
    a dotted line at the chance level of an axis that is a task metric (``chance``: metric -> level), so a front
    that sits on it reads as noise, and for a decoder a dashed one where the untouched model scores
    (``untouched``), so a front that only reaches the model as it was reads so too."""
    fig = go.Figure()
    plotted = trials.dropna(subset=[x, y])
    on_front = analysis.front(plotted, spec, [x, y])
    colours = method_colours(plotted["method"].dropna().tolist())
    complete = plotted["state"] == "COMPLETE"
    probes = analysis.probe_runs(plotted)
    groups = [
        ("infeasible", complete & ~plotted["feasible"] & ~plotted["baseline"] & ~probes,
         {"symbol": "x-thin", "size": 6, "line": {"width": 1.4, "color": "rgba(214,39,40,0.6)"}}),
        ("pruned", plotted["state"] == "PRUNED", {"symbol": "diamond-open", "size": 8, "color": FAINT}),
        ("baseline", plotted["baseline"], {"symbol": "star", "size": 14, "color": "#222222"}),
        # The learnability probe's runs (autopeft/search/probe.py): the fidelity's evidence, not candidates.
        ("probe run", probes & ~plotted["baseline"],
         {"symbol": "triangle-up-open", "size": 10, "color": "#6a51a3"}),
    ]
    dominated = complete & plotted["feasible"] & ~plotted["baseline"] & ~probes & ~on_front
    for method, colour in colours.items():
        rows = plotted[dominated & (plotted["method"] == method)]
        if len(rows):
            fig.add_trace(go.Scatter(
                x=rows[x], y=rows[y], mode="markers", name=f"{method} (dominated)", customdata=_custom(rows),
                hovertemplate=_hover(x, y), legendgroup=method,
                marker={"color": colour, "opacity": 0.55, "size": 9}))
    for name, mask, marker in groups:
        rows = plotted[mask]
        if len(rows):
            fig.add_trace(go.Scatter(x=rows[x], y=rows[y], mode="markers", name=name, customdata=_custom(rows),
                                     hovertemplate=_hover(x, y), marker=marker))
    front_rows = plotted[on_front]
    if len(front_rows):
        xs, ys = step_line(front_rows, x, y, spec)
        fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", name="Pareto front", hoverinfo="skip",
                                 line={"color": "#333333", "width": 1.5, "shape": "linear"}))
    for method, colour in colours.items():
        rows = front_rows[front_rows["method"] == method]
        if len(rows):
            fig.add_trace(go.Scatter(
                x=rows[x], y=rows[y], mode="markers", name=f"{method} (front)", customdata=_custom(rows),
                hovertemplate=_hover(x, y), legendgroup=method,
                marker={"color": colour, "size": 12, "line": {"width": 1.5, "color": "#222222"}}))
    if highlight:
        rows = plotted[plotted["number"].isin(highlight)]
        fig.add_trace(go.Scatter(x=rows[x], y=rows[y], mode="markers", name="picked", customdata=_custom(rows),
                                 hovertemplate=_hover(x, y),
                                 marker={"symbol": "circle-open", "size": 22, "color": "#e6550d",
                                         "line": {"width": 3}}))
    for name, add_line in ((x, fig.add_vline), (y, fig.add_hline)):
        if chance and name in chance:
            add_line(chance[name], line={"dash": "dot", "color": "#888888", "width": 1.2},
                     annotation_text="chance", annotation_font_color="#888888")
        # a search on its loss reads the untouched model as its chance level: one line, not two on top of another
        if untouched and name in untouched and not (chance and chance.get(name) == untouched[name]):
            add_line(untouched[name], line={"dash": "dash", "color": "#3182bd", "width": 1.2},
                     annotation_text="untouched model", annotation_font_color="#3182bd",
                     annotation_position="bottom right")
    fig.update_layout(**LAYOUT, height=520, clickmode="event+select", dragmode="pan",
                      xaxis_title=_label(x, spec), yaxis_title=_label(y, spec))
    fig.update_xaxes(type="log" if analysis.is_log(x) else "linear")
    fig.update_yaxes(type="log" if analysis.is_log(y) else "linear")
    return fig


def hypervolume(history: pd.DataFrame, by: str) -> go.Figure:
    """Hypervolume after each completed trial, against the count (``by='completed'``) or the clock."""
    fig = go.Figure(go.Scatter(x=history[by], y=history["hypervolume"],
                               mode="lines+markers" if len(history) <= 200 else "lines",
                               line={"shape": "hv", "color": PALETTE[0]}, customdata=history[["number"]],
                               hovertemplate="after trial %{customdata[0]}<br>hypervolume %{y:.4f}<extra></extra>"))
    fig.update_layout(**LAYOUT, height=320, xaxis_title="completed trials" if by == "completed" else "time",
                      yaxis_title="hypervolume (normalised)")
    return fig


def worker_timeline(trials: pd.DataFrame) -> go.Figure:
    """One row per worker process, one bar per trial from its start to its end (now, if still running)."""
    timed = trials.dropna(subset=["start"]).copy()
    now = pd.Timestamp.now(tz="UTC").tz_localize(None).floor("s")  # the database keeps naive UTC
    timed["end"] = timed["complete"].fillna(max(now, timed["start"].max()) if len(timed) else now)
    timed["worker"] = timed["worker"].replace("", "(no worker recorded)")
    colours = {"COMPLETE": PALETTE[0], "FAIL": "#d62728", "RUNNING": "#ff7f0e", "PRUNED": FAINT,
               "INTERRUPTED": "#9467bd", "REJECTED": "#bbbbbb",
               "DUPLICATE": "#dddddd"}
    fig = go.Figure()
    for state, rows in timed.groupby("state"):
        width_ms = (rows["end"] - rows["start"]).dt.total_seconds() * 1000
        fig.add_trace(go.Bar(
            base=rows["start"], x=width_ms.clip(lower=300), y=rows["worker"], orientation="h", name=state,
            marker_color=colours.get(state, FAINT), customdata=_custom(rows),
            hovertemplate="<b>trial %{customdata[0]}</b> (%{customdata[1]})<br>%{customdata[2]}<extra></extra>"))
    fig.update_layout(**LAYOUT, height=120 + 40 * max(1, timed["worker"].nunique()), barmode="overlay",
                      xaxis={"type": "date", "title": "time"}, yaxis_title="worker")
    return fig


def parallel_coordinates(trials: pd.DataFrame, spec: SearchSpec) -> go.Figure:
    """Completed trials across method, size, placement, learning rate and every objective, coloured by the task
    metric. Size is each method's own size knob (rank, bottleneck, prefix length), so mixed searches draw too."""
    done = trials[trials["state"] == "COMPLETE"]
    dimensions = []
    methods = sorted(done["method"].dropna().unique())
    if len(methods) > 1:
        codes = done["method"].map({m: i for i, m in enumerate(methods)})
        dimensions.append({"label": "method", "values": codes, "tickvals": list(range(len(methods))),
                           "ticktext": methods})
    sizes = done["size"].dropna().astype(float)
    if sizes.nunique() > 1:  # log2 of the method's size knob; methods without one sit on "none"
        top = int(np.ceil(np.log2(sizes.max())))
        dimensions.append({"label": "size (rank, bottleneck, prefix)",
                           "values": np.log2(done["size"].astype(float)).fillna(-1),
                           "tickvals": [-1, *range(0, top + 1)], "ticktext": ["none", *(2**i for i in range(top + 1))]})
    for name in ["n_layers", "learning_rate", "sparsity", "bits", *spec.objective_names]:
        if name in done and done[name].notna().all() and done[name].nunique() > 1:
            values = done[name].astype(float)
            label = name
            if analysis.is_log(name) or name == "learning_rate":
                values, label = np.log10(values.clip(lower=1e-12)), f"log10 {name}"
            dimensions.append({"label": label, "values": values})
    metric = spec.task_metric
    fig = go.Figure(go.Parcoords(dimensions=dimensions, line={
        "color": done[metric].astype(float) if metric in done else None, "colorscale": "Viridis",
        "showscale": True, "colorbar": {"title": metric}}))
    fig.update_layout(template="plotly_white", height=420, margin={"l": 60, "r": 60, "t": 50, "b": 20})
    return fig


def importance(table: pd.DataFrame, objective: str) -> go.Figure:
    fig = go.Figure(go.Bar(x=table["importance"], y=table["parameter"], orientation="h",
                           marker_color=PALETTE[1]))
    fig.update_layout(**LAYOUT, height=80 + 28 * max(1, len(table)), title=f"{objective}",
                      xaxis={"title": "share of variance explained", "range": [0, 1]},
                      yaxis={"autorange": "reversed"})
    return fig


def compare(fronts: dict[str, pd.DataFrame], x: str, y: str, spec: SearchSpec) -> go.Figure:
    """Several searches' fronts on one plot, each as its staircase and points."""
    fig = go.Figure()
    for i, (name, rows) in enumerate(fronts.items()):
        colour = PALETTE[i % len(PALETTE)]
        xs, ys = step_line(rows, x, y, spec)
        fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", line={"color": colour}, legendgroup=name,
                                 showlegend=False, hoverinfo="skip"))
        fig.add_trace(go.Scatter(x=rows[x], y=rows[y], mode="markers", name=f"{name} ({len(rows)})",
                                 legendgroup=name, marker={"color": colour, "size": 10},
                                 customdata=_custom(rows), hovertemplate=_hover(x, y)))
    fig.update_layout(**LAYOUT, height=480, xaxis_title=_label(x, spec), yaxis_title=_label(y, spec))
    fig.update_xaxes(type="log" if analysis.is_log(x) else "linear")
    fig.update_yaxes(type="log" if analysis.is_log(y) else "linear")
    return fig


def loss_curve(curve: list[list[float]], rungs: list[list[float]] | None = None,
               metric: str = "metric") -> go.Figure:
    """Training loss by step; with rungs, the value reported at each rung on a second axis."""
    fig = go.Figure(go.Scatter(x=[p[0] for p in curve], y=[p[1] for p in curve], mode="lines+markers",
                               name="training loss", line={"color": PALETTE[0]}))
    if rungs:
        fig.add_trace(go.Scatter(x=[p[0] for p in rungs], y=[p[1] for p in rungs], mode="lines+markers",
                                 name=f"{metric} at rung", yaxis="y2",
                                 line={"color": PALETTE[1], "dash": "dot"}, marker={"size": 10, "symbol": "diamond"}))
        fig.update_layout(yaxis2={"title": f"{metric} at rung", "overlaying": "y", "side": "right",
                                  "showgrid": False})
    fig.update_layout(**LAYOUT, height=300, xaxis_title="step", yaxis_title="training loss")
    return fig


def method_front_counts(breakdown: pd.DataFrame) -> go.Figure:
    colours = method_colours(breakdown["method"].tolist())
    fig = go.Figure(go.Bar(x=breakdown["method"], y=breakdown["on_front"],
                           marker_color=[colours[m] for m in breakdown["method"]]))
    fig.update_layout(**LAYOUT, height=280, yaxis_title="trials on the front")
    return fig
