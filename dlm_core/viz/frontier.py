"""The quality-parallelism frontier as a plotly chart, from ``benchmarks/frontier.py``'s JSON (no torch).

x: tokens committed per forward pass; y: generative perplexity of the samples under the AR twin
(lower reads more like the corpus). One trace per diffusion model, its points ordered by tokens per
pass, each hover naming the decoding setting and its other figures; the AR twin (one token per
forward) as a single reference point. A good parallel decoder moves right without moving up.

``frontier_dict(report)`` returns the figure as a plain dict (JSON-ready, what ``gr.Plot`` and
plotly.js take); ``frontier_figure(report)`` wraps it in a validated ``plotly.graph_objects.Figure``.
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from typing import Any

from .charts import chart_layout

X_KEY = "tokens_per_forward"
Y_KEY = "gen_ppl_under_ar"


def _hover(row: Mapping[str, Any]) -> str:
    """One point's hover text: the setting, then its figures (escaped: settings are free text)."""
    parts = [
        f"<b>{html.escape(str(row.get('setting', '')))}</b>",
        f"{row[X_KEY]:.2f} tokens/pass, gen PPL {row[Y_KEY]:.1f}",
    ]
    if "token_entropy" in row and "repeated_4gram_share" in row:
        parts.append(f"entropy {row['token_entropy']:.2f}, repeated 4-grams {row['repeated_4gram_share']:.1%}")
    if "known_word_share" in row:
        parts.append(f"known words {row['known_word_share']:.1%}")
    if "wall_s" in row:
        speed = f" ({row['speedup_vs_ar']:.2f}x the AR twin)" if "speedup_vs_ar" in row else ""
        parts.append(f"{row['wall_s']:.2f} s{speed}")
    return "<br>".join(parts)


def frontier_dict(report: Mapping[str, Any], title: str = "Quality vs parallelism") -> dict[str, Any]:
    """Plotly figure dict from a frontier report: ``report["rows"]`` (dicts with ``model``,
    ``setting``, ``tokens_per_forward``, ``gen_ppl_under_ar``, optional other figures) and optional
    ``report["ar"]`` (the AR twin's row). Raises ``ValueError`` naming the missing key."""
    rows = report.get("rows")
    if not isinstance(rows, list):
        raise ValueError("report must have a list 'rows' (the output of benchmarks/frontier.py)")
    for index, row in enumerate(rows):
        for key in ("model", "setting", X_KEY, Y_KEY):
            if key not in row:
                raise ValueError(f"rows[{index}] has no {key!r}")
    models: dict[str, list[Mapping[str, Any]]] = {}
    for row in rows:
        models.setdefault(str(row["model"]), []).append(row)
    data: list[dict[str, Any]] = []
    for model, points in models.items():
        points = sorted(points, key=lambda row: row[X_KEY])
        data.append({
            "type": "scatter", "mode": "lines+markers", "name": html.escape(model),
            "x": [row[X_KEY] for row in points], "y": [row[Y_KEY] for row in points],
            "text": [_hover(row) for row in points], "hovertemplate": "%{text}<extra>" + html.escape(model) + "</extra>",
        })
    ar = report.get("ar")
    if ar:
        data.append({
            "type": "scatter", "mode": "markers", "name": "AR twin + KV cache",
            "x": [ar.get(X_KEY, 1.0)], "y": [ar[Y_KEY]], "marker": {"symbol": "diamond", "size": 11, "color": "#444"},
            "text": [_hover({"setting": "AR twin + KV cache", X_KEY: ar.get(X_KEY, 1.0), **ar})],
            "hovertemplate": "%{text}<extra></extra>",
        })
    # A short y title (the plot is ~250 px tall): the hover and the tab's sentence say what it measures.
    layout = chart_layout(title, "tokens per forward pass", "gen. perplexity (lower = better)", log_y=False, height=360)
    return {"data": data, "layout": layout}


def frontier_figure(report: Mapping[str, Any], **kwargs: Any):
    """``frontier_dict`` as a ``plotly.graph_objects.Figure`` (plotly validates every property)."""
    import plotly.graph_objects as go

    return go.Figure(frontier_dict(report, **kwargs))
