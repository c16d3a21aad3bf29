"""Plotly figures of a job's curves, built as plain dicts (no plotly package needed).

Gradio 6 draws a `gr.Plot` value of type "plotly" with the plotly.js it bundles, through
`Plotly.react`, so a figure sent again keeps what the user did to it (zoom, pan, hidden traces)
as long as its `uirevision` stays the same: the zoom survives every refresh, and a new job (or a
switch of the log scale, for the y axes) starts from a fresh view. Plotly draws axis titles,
ticks formatted for their range (exponents written in full, "1e-3"), automatic margins so no
label is cut, and a single point as a visible marker.

    training_figure(points, "contrastive_acc", smoothing=0.6, log_y=False, revision="job-3")
    system_figure(points, revision="job-3")

`points` is a `Curves["points"]` dict: metric name -> [[step, value], ...].
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

from gradio.components.plot import PlotData

MAX_PLOT_POINTS = 2000  # per curve; longer histories are thinned for the browser
MARKERS_UP_TO = 25  # curves with at most this many points show a marker on each
SYSTEM_PREFIX = "system/"  # engine/sysmetrics.py logs its points under these names
TRAINING_HEIGHT = 370
SYSTEM_HEIGHT = 230
COLOURS = ["#4f46e5", "#0d9488", "#d97706", "#db2777"]
SYSTEM_TITLES = {
    "system/cpu_percent": "CPU % (100 = one core)",
    "system/rss_mb": "memory (resident MB)",
    "system/gpu_util_percent": "GPU utilisation %",
    "system/gpu_memory_mb": "GPU memory (MB)",
}

Rows = Sequence[Sequence[float]]


def ema(values: Sequence[float], weight: float) -> list[float]:
    """TensorBoard's smoothing: an exponential moving average with bias correction, so the
    first points are not pulled towards zero. `weight` 0 returns the values unchanged."""
    if weight <= 0:
        return list(values)
    out, last = [], 0.0
    for count, value in enumerate(values, start=1):
        last = last * weight + (1 - weight) * value
        out.append(last / (1 - weight**count))
    return out


def thin(rows: Rows, max_points: int = MAX_PLOT_POINTS) -> list[Sequence[float]]:
    """Every k-th row so at most about `max_points` remain, the last one always kept."""
    if len(rows) <= max_points:
        return list(rows)
    stride = -(-len(rows) // max_points)
    kept = list(rows[::stride])
    return kept + ([rows[-1]] if (len(rows) - 1) % stride else [])


def _traces(
    rows: Rows, name: str, axes: str, colour: str, smoothing: float
) -> list[dict[str, Any]]:
    """The raw curve (faint when smoothed) and its smoothed twin, on subplot `axes` ("" or 2..)."""
    rows = [r for r in rows if math.isfinite(r[1])]
    steps = [r[0] for r in rows]
    values = [r[1] for r in rows]
    common = {"type": "scatter", "xaxis": f"x{axes}", "yaxis": f"y{axes}", "showlegend": False}
    marker = {"size": 6, "color": colour}
    mode = "lines+markers" if len(rows) <= MARKERS_UP_TO else "lines"
    raw = thin(list(zip(steps, values, strict=True)))
    raw_trace = {
        **common,
        "name": name,
        "x": [r[0] for r in raw],
        "y": [r[1] for r in raw],
        "mode": mode,
        "line": {"color": colour, "width": 1.5},
        "marker": marker,
        "hovertemplate": f"step %{{x}}<br>{name} %{{y:.4~g}}<extra></extra>",
    }
    if smoothing <= 0 or len(rows) < 2:
        return [raw_trace]
    smooth = thin(list(zip(steps, ema(values, smoothing), strict=True)))
    raw_trace.update(opacity=0.3, hoverinfo="skip", hovertemplate=None)
    return [
        raw_trace,
        {
            **common,
            "name": f"{name} (smoothed)",
            "x": [r[0] for r in smooth],
            "y": [r[1] for r in smooth],
            "mode": mode,
            "line": {"color": colour, "width": 2},
            "marker": marker,
            "hovertemplate": f"step %{{x}}<br>{name} %{{y:.4~g}} (smoothed)<extra></extra>",
        },
    ]


def _axis(title: str, domain: list[float], **more: Any) -> dict[str, Any]:
    return {
        "title": {"text": title, "standoff": 4},
        "domain": domain,
        "automargin": True,  # room for every tick label: none is cut
        "exponentformat": "e",  # 1e-3, not "e-3" cut off or a bare "m"
        "showexponent": "all",
        "zeroline": False,
        **more,
    }


def _step_axis(domain: list[float], steps: list[float], **more: Any) -> dict[str, Any]:
    """A step axis: whole steps only (plotly would tick 1.2, 1.4 ... over the first steps)."""
    axis = _axis("step", domain, **more)
    if not steps or max(steps) - min(steps) <= 8:
        axis.update(dtick=1, tick0=0)
    return axis


def _flat_range(values: list[float], log_y: bool) -> list[float] | None:
    """A y range around a curve with a single value (one point, or all equal), which plotly
    would centre in [-1, 1], drawing 1e-4 on the 0 line; None when the values vary."""
    if not values or min(values) != max(values):
        return None
    value = values[0]
    if log_y:
        return [math.log10(value) - 0.5, math.log10(value) + 0.5] if value > 0 else None
    half = abs(value) / 2 or 1.0
    return [value - half, value + half]


def _yaxis(
    title: str,
    domain: list[float],
    log_y: bool,
    revision: str,
    anchor: str,
    values: list[float] | None = None,
) -> dict:
    # Its own uirevision: switching the scale re-fits the values, a refresh keeps the zoom.
    axis = _axis(
        title,
        domain,
        anchor=anchor,
        type="log" if log_y else "linear",
        uirevision=f"{revision}-{'log' if log_y else 'linear'}",
    )
    if flat := _flat_range(values or [], log_y):
        axis["range"] = flat
    return axis


def _values(data: list[dict], axes: str) -> list[float]:
    return [y for trace in data if trace["yaxis"] == f"y{axes}" for y in trace["y"]]


def _title(text: str, x: float, y: float) -> dict[str, Any]:
    return {
        "text": f"<b>{text}</b>",
        "x": x,
        "y": y,
        "xref": "paper",
        "yref": "paper",
        "xanchor": "left",
        "yanchor": "bottom",
        "showarrow": False,
        "font": {"size": 13},
    }


def _figure(data: list, layout: dict[str, Any], revision: str, height: int) -> dict[str, Any]:
    base = {
        "height": height,
        "margin": {"l": 10, "r": 10, "t": 24, "b": 10},
        "uirevision": revision,
        "hovermode": "closest",
        "paper_bgcolor": "rgba(0,0,0,0)",
        "plot_bgcolor": "rgba(0,0,0,0)",
        "font": {"size": 11},
        "dragmode": "zoom",
    }
    return {"data": data, "layout": {**base, **layout}, "config": {"displaylogo": False}}


def _waiting(annotations: list[dict], points: dict[str, Rows], names: list[str]) -> list[dict]:
    if any(points.get(n) for n in names):
        return annotations
    note = "no points yet: the first one appears after the job's first logged step"
    return annotations + [
        {
            "text": note,
            "x": 0.5,
            "y": 0.8,
            "xref": "paper",
            "yref": "paper",
            "showarrow": False,
            "font": {"size": 12, "color": "#64748b"},
        }
    ]


def training_figure(
    points: dict[str, Rows],
    extra_name: str | None,
    *,
    smoothing: float = 0.0,
    log_y: bool = False,
    revision: str = "none",
) -> dict[str, Any]:
    """Loss on top, learning rate and one other metric below, x axes zoomed together."""
    extra_title = extra_name or "other metric"
    data = [
        *_traces(points.get("loss", []), "loss", "", COLOURS[0], smoothing),
        # The learning rate is a schedule, not a noisy measurement: drawn exact, never smoothed.
        *_traces(points.get("lr", []), "lr", "2", COLOURS[1], 0.0),
        *_traces(points.get(extra_name or "", []), extra_title, "3", COLOURS[2], smoothing),
    ]
    top, low = [0.58, 0.96], [0.0, 0.34]
    steps = [x for trace in data for x in trace["x"]]
    layout = {
        "xaxis": _step_axis([0, 1], steps, anchor="y", uirevision=revision),
        "yaxis": _yaxis("loss", top, log_y, revision, "x", _values(data, "")),
        "xaxis2": _step_axis([0, 0.46], steps, anchor="y2", matches="x"),
        "yaxis2": _yaxis("lr", low, log_y, revision, "x2", _values(data, "2")),
        "xaxis3": _step_axis([0.54, 1], steps, anchor="y3", matches="x"),
        "yaxis3": _yaxis(extra_title, low, log_y, revision, "x3", _values(data, "3")),
        "annotations": _waiting(
            [
                _title("Loss", 0, 0.965),
                _title("Learning rate", 0, 0.345),
                _title(extra_title, 0.54, 0.345),
            ],
            points,
            ["loss"],
        ),
    }
    return _figure(data, layout, revision, TRAINING_HEIGHT)


def system_names(points: dict[str, Rows]) -> list[str]:
    """The system metrics logged, in SYSTEM_TITLES order, unknown ones after."""
    names = [n for n in points if n.startswith(SYSTEM_PREFIX)]
    order = list(SYSTEM_TITLES)
    return sorted(names, key=lambda n: (order.index(n) if n in order else len(order), n))


def system_figure(
    points: dict[str, Rows], *, smoothing: float = 0.0, revision: str = "none"
) -> dict[str, Any]:
    """The worker's CPU, memory (and GPU) curves side by side, x axes zoomed together."""
    names = system_names(points) or list(SYSTEM_TITLES)[:2]
    steps = [row[0] for name in names for row in points.get(name, [])]
    width = 1 / len(names)
    data: list[dict] = []
    layout: dict[str, Any] = {"annotations": []}
    for i, name in enumerate(names):
        axes = "" if i == 0 else str(i + 1)
        domain = [i * width + (0.04 if i else 0), (i + 1) * width - 0.04]
        title = SYSTEM_TITLES.get(name, name.removeprefix(SYSTEM_PREFIX))
        data += _traces(points.get(name, []), title, axes, COLOURS[i % len(COLOURS)], smoothing)
        more = {"matches": "x"} if i else {"uirevision": revision}
        layout[f"xaxis{axes}"] = _step_axis(domain, steps, anchor=f"y{axes}", **more)
        layout[f"yaxis{axes}"] = _axis(
            title.split(" (")[0], [0, 0.88], anchor=f"x{axes}", rangemode="tozero"
        )
        layout["annotations"].append(_title(title, domain[0], 0.9))
    layout["annotations"] = _waiting(layout["annotations"], points, names)
    return _figure(data, layout, revision, SYSTEM_HEIGHT)


def as_plot(figure: dict[str, Any]) -> PlotData:
    """A figure dict as a `gr.Plot` value."""
    return PlotData(type="plotly", plot=json.dumps(figure))
