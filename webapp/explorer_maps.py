"""The Embeddings tab's plain helpers (no components): a projected view (`studio.project`)
turned into the scatter's frame, its colours and legend, the 3-D view's plotly figure, the
`/embeddings` trace list, the search, k-NN and selection texts, and the CSV file. The tab
(`webapp/explorer_tab.py`) wires them up."""

from __future__ import annotations

import html
import os
import re
import tempfile
from collections import Counter
from typing import Any

import pandas as pd
import plotly.graph_objects as go

from engine.contract import DatasetInfo, EmbeddingMap
from webapp.figures import message

SAME_ARCH = "same-arch-random"  # model B: the random initialisation of model A's network
MAX_THUMBS = 48  # images the gallery shows for one selection
TEXT_LINES = 8  # texts the selection panel quotes
PALETTE = [
    "#4e79a7",
    "#f28e2b",
    "#e15759",
    "#76b7b2",
    "#59a14f",
    "#edc948",
    "#b07aa1",
    "#ff9da7",
    "#9c755f",
    "#bab0ac",
    "#1f77b4",
    "#aec7e8",
    "#ff7f0e",
    "#ffbb78",
    "#2ca02c",
    "#98df8a",
    "#d62728",
    "#ff9896",
    "#9467bd",
    "#c5b0d5",
]
TEXT_PALETTE = [
    "#1d3c5c",
    "#8a4c0f",
    "#7d1f20",
    "#2f5d59",
    "#2b5527",
    "#7a6414",
    "#5c3a5a",
    "#9c4a55",
    "#4d3a2e",
    "#5c5753",
]
# A factor whose values are all colour names (shapes' color, background_color) is drawn in
# those colours; white a light grey, so it shows on the plot's background.
NAMED_COLOURS = {
    "black": "#222222",
    "blue": "#2f6fd6",
    "cyan": "#22b8cc",
    "green": "#3a9e4f",
    "grey": "#9a9a9a",
    "gray": "#9a9a9a",
    "orange": "#f28e2b",
    "pink": "#f08cc0",
    "purple": "#8a55b5",
    "red": "#d63a3a",
    "white": "#d9d9d9",
    "yellow": "#e3c229",
    "brown": "#8c5a3c",
}
HOVER = ["label", "index", "text"]
AXIS = {"pca": "PC", "umap": "UMAP", "tsne": "t-SNE"}  # axis titles: "PC 1", "UMAP 2", ...
PROJECTION_NAMES = {"pca": "PCA", "umap": "UMAP", "tsne": "t-SNE"}
HEIGHT_3D = 430
LEGEND_CSS = """
.ps-legend { font-size: 0.85rem; line-height: 1.9; }
.ps-legend-item { white-space: nowrap; margin-right: 0.7rem; }
.ps-swatch { display: inline-block; width: 0.7rem; height: 0.7rem; border-radius: 50%;
             margin-right: 0.25rem; vertical-align: -0.05rem; }
"""


def group_name(label: str, kind: str) -> str:
    """The colour group of a point: its label, or "label · text" for a text point."""
    return label if kind == "image" or not kind else f"{label} · text"


def colour_choices(view: EmbeddingMap | None) -> list[str]:
    """What a map can be coloured by: the label, then the dataset's nuisance factors."""
    return ["label", *sorted(view["points"].get("factors") or {} if view else {})]


def map_frame(view: EmbeddingMap, colour_by: str = "label") -> pd.DataFrame:
    """The plot's rows, in the engine's point order (the selection script counts on it); with
    a factor to colour by, a column of that name."""
    p = view["points"]
    frame = pd.DataFrame(
        {
            "x": p["x"],
            "y": p["y"],
            "label": [group_name(lab, k) for lab, k in zip(p["label"], p["kind"])],
            "index": p["index"],
            "text": [t if t else "" for t in p["text"]],
        }
    )
    factors = p.get("factors") or {}
    if colour_by != "label" and colour_by in factors:
        frame[colour_by] = [
            group_name(v or "(text)", k) for v, k in zip(factors[colour_by], p["kind"])
        ]
    return frame


def color_map(view: EmbeddingMap, colour_by: str = "label") -> dict[str, str]:
    """A fixed colour per class or factor value (the same on both maps); texts darker."""
    factors = view["points"].get("factors") or {}
    if colour_by != "label" and colour_by in factors:
        names = sorted({v for v in factors[colour_by] if v})
    else:
        names = view.get("class_names") or sorted(set(view["points"]["label"]))
    out = {}
    named = names and all(name in NAMED_COLOURS for name in names)  # a colour factor
    for i, name in enumerate(names):
        out[name] = NAMED_COLOURS[name] if named else PALETTE[i % len(PALETTE)]
        out[f"{name} · text"] = TEXT_PALETTE[i % len(TEXT_PALETTE)]
    out["(text) · text"] = "#333333"  # a class prompt has no factor value
    return out


def legend_html(view: EmbeddingMap | None, colour_by: str = "label") -> str:
    """One legend for both maps (each plot's own legend would be cut off past a few
    entries): a swatch per class or factor value present on the map."""
    if not view:
        return ""
    frame = map_frame(view, colour_by)
    present = set(frame[colour_by if colour_by in frame.columns else "label"])
    items = [
        f'<span class="ps-legend-item"><span class="ps-swatch" style="background:{colour}">'
        f"</span>{html.escape(name)}</span>"
        for name, colour in color_map(view, colour_by).items()
        if name in present
    ]
    return f'<div class="ps-legend"><b>{html.escape(colour_by)}</b> ' + " ".join(items) + "</div>"


def traces(view: EmbeddingMap) -> list[dict[str, Any]]:
    """One trace per colour group (label, and label · text for texts): {"name", "x", "y",
    ("z" in a 3-D view), "index", "text"}, in the order of the class names."""
    p = view["points"]
    axes = ("x", "y", "z") if "z" in p else ("x", "y")
    by_name: dict[str, dict[str, list]] = {}
    for row, (label, kind) in enumerate(zip(p["label"], p["kind"])):
        trace = by_name.setdefault(
            group_name(label, kind), {**{axis: [] for axis in axes}, "index": [], "text": []}
        )
        for axis in axes:
            trace[axis].append(p[axis][row])
        trace["index"].append(p["index"][row])
        trace["text"].append(p["text"][row])
    order = {name: i for i, name in enumerate(color_map(view))}
    return [
        {"name": name, **values}
        for name, values in sorted(by_name.items(), key=lambda kv: order.get(kv[0], 1e9))
    ]


def summary(view: EmbeddingMap) -> dict[str, Any]:
    """What the /embeddings endpoint returns besides the traces."""
    return {
        key: view[key]
        for key in (
            "model",
            "dataset",
            "split",
            "projection",
            "params",
            "dims",
            "num_points",
            "feature_dim",
            "knn_top1",
            "factor_knn",
            "message",
            "capped",
            "timing",
        )
    }


def search_rows(view: EmbeddingMap | None, query: str | None) -> list[int]:
    """The rows whose label or caption holds every word of `query` (case ignored), in order;
    none for an empty query."""
    words = [w for w in re.split(r"[\s,]+", (query or "").lower()) if w]
    if not view or not words:
        return []
    p = view["points"]
    found = []
    for row, (label, text) in enumerate(zip(p["label"], p["text"])):
        haystack = f"{label} {text or ''}".lower()
        if all(word in haystack for word in words):
            found.append(row)
    return found


def figure_3d(
    view: EmbeddingMap, colour_by: str = "label", highlight: list[int] | None = None
) -> go.Figure:
    """The 3-D view (plotly, rotate with the mouse, as TensorBoard's projector): one trace
    per colour group in the 2-D maps' colours; `highlight` rows (a search) drawn large and
    ringed on top, the rest faded."""
    frame = map_frame(view, colour_by)
    frame["z"] = view["points"]["z"]
    column = colour_by if colour_by in frame.columns else "label"
    colours = color_map(view, colour_by)
    hover = "%{customdata[0]}<br>#%{customdata[1]}<br>%{customdata[2]}<extra></extra>"
    faded = bool(highlight)
    figure = go.Figure()
    for name, group in frame.groupby(column, sort=False):
        figure.add_trace(
            go.Scatter3d(
                x=group["x"],
                y=group["y"],
                z=group["z"],
                mode="markers",
                name=str(name),
                marker={"size": 3, "color": colours.get(str(name), "#888888")},
                opacity=0.25 if faded else 0.9,
                customdata=group[["label", "index", "text"]].to_numpy(),
                hovertemplate=hover,
            )
        )
    if highlight:
        found = frame.iloc[highlight]
        figure.add_trace(
            go.Scatter3d(
                x=found["x"],
                y=found["y"],
                z=found["z"],
                mode="markers",
                name=f"found ({len(found)})",
                marker={
                    "size": 6,
                    "color": [colours.get(str(v), "#888888") for v in found[column]],
                    "line": {"color": "#111111", "width": 2},
                },
                customdata=found[["label", "index", "text"]].to_numpy(),
                hovertemplate=hover,
            )
        )
    axis = AXIS.get(view["projection"], "")
    figure.update_layout(
        title={"text": view["model"]["name"], "font": {"size": 13}},
        height=HEIGHT_3D,
        margin={"l": 0, "r": 0, "t": 30, "b": 0},
        showlegend=False,
        scene={
            "xaxis": {"title": {"text": f"{axis} 1"}},
            "yaxis": {"title": {"text": f"{axis} 2"}},
            "zaxis": {"title": {"text": f"{axis} 3"}},
        },
        uirevision=view["projection"],  # keep the camera while recolouring or searching
    )
    return figure


def knn_text(view: EmbeddingMap | None) -> str:
    """Under a map: what it is, its k-NN accuracy by label (and by each nuisance factor: what
    else the embedding keeps), and what it cost."""
    if view is None:
        return ""
    acc = view.get("knn_top1")
    figure = "n/a (no labels)" if acc is None else f"**{acc:.1%}**"
    others = "".join(
        f" · {name} {value:.0%}" for name, value in sorted((view.get("factor_knn") or {}).items())
    )
    took = view["timing"]
    embed = "cached" if took["embeddings_cached"] else f"{took['embed_s']:.1f} s"
    return (
        f"**{view['model']['name']}** · {view['num_points']:,} points, "
        f"{view['feature_dim']}-d · embed {embed}, {view['projection'].upper()}"
        f"{' 3-D' if view.get('dims') == 3 else ''} "
        f"{took['project_s']:.1f} s  \nk-NN (leave-one-out, k 20): label {figure}{others}"
    )


def resolve_b(model_a: str | None, model_b: str | None) -> str | None:
    """Model B's name: SAME_ARCH means the random init of A's network (A must be a job)."""
    if not model_b:
        return None
    if model_b == SAME_ARCH:
        a = str(model_a or "").strip().removeprefix("#")
        return f"random:{a}" if a.isdigit() else None
    return model_b


def selection_rows(view: EmbeddingMap, positions: list[int]) -> list[int]:
    """Valid plot positions, in order, without repeats."""
    count = len(view["points"]["index"])
    seen: dict[int, None] = {}
    for position in positions or []:
        if isinstance(position, (int, float)) and 0 <= int(position) < count:
            seen[int(position)] = None
    return list(seen)


def selection_text(view: EmbeddingMap | None, rows: list[int]) -> str:
    if not view or not rows:
        return "Click a point or drag a box on either map to see the images behind it."
    p = view["points"]
    labels = Counter(p["label"][r] for r in rows)
    parts = ", ".join(f"{count} × {label}" for label, count in labels.most_common(8))
    kinds = p.get("kind") or ["image"] * len(p["label"])
    images = sum(1 for r in rows if kinds[r] == "image")
    more = f" (the first {MAX_THUMBS} images shown)" if images > MAX_THUMBS else ""
    out = f"**{len(rows)} selected**{more}: {parts}"
    texts = [r for r in rows if kinds[r] == "text"][:TEXT_LINES]
    for r in texts:  # a text point has no picture: its words instead
        out += f"\n- {p['label'][r]}: {p['text'][r][:120]}"
    return out


def write_csv(text: str) -> str:
    """The CSV in a fresh temporary file (a folder Gradio serves files from)."""
    folder = tempfile.mkdtemp(prefix="pretext-embeddings-")
    path = os.path.join(folder, "embedding-map.csv")
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(text)
    return path


def dataset_choices(datasets: list[DatasetInfo]) -> list[tuple[str, str]]:
    return [
        (f"{d['name']} ({d['kind']})" if d["kind"] != "image" else d["name"], d["name"])
        for d in datasets
        if d.get("available", True)
    ]


def projection_params(
    projection: str, n_neighbors: float, min_dist: float, perplexity: float
) -> dict[str, Any]:
    """The parameters `projection` takes, from the sliders."""
    if projection == "umap":
        return {"n_neighbors": int(n_neighbors), "min_dist": float(min_dist)}
    if projection == "tsne":
        return {"perplexity": float(perplexity)}
    return {}


def describe(request: dict[str, Any]) -> str:
    """ "UMAP (n_neighbors 15, min_dist 0.1), 3-D" for the stale line."""
    params = ", ".join(f"{k} {v:g}" for k, v in request["params"].items())
    name = PROJECTION_NAMES[request["projection"]]
    return f"{name}{f' ({params})' if params else ''}{', 3-D' if request['dims'] == 3 else ''}"


def stale_note(drawn: dict[str, Any], wanted: dict[str, Any]) -> str:
    """The line over greyed-out maps: what they show, and that Draw shows what is asked."""
    if (drawn["projection"], drawn["params"], drawn["dims"]) != (
        wanted["projection"],
        wanted["params"],
        wanted["dims"],
    ):
        what = f"These maps show {describe(drawn)}: press Draw for {describe(wanted)}."
    else:
        what = "The inputs changed since these maps were drawn: press Draw to redraw them."
    return message(what, "warn")


def found_text(view: EmbeddingMap, rows: list[int], search: str) -> str:
    """The selection panel after a search (or the plain hint without one)."""
    if not (search or "").strip():
        return selection_text(None, [])
    if not rows:
        return f"No point's label or caption holds “{search.strip()}”."
    return f"Search “{search.strip()}”: " + selection_text(view, rows)
