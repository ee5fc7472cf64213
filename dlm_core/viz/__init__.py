"""Display layer: a run as HTML (token canvas, legend, inspector, stats), a compact plotly heatmap,
a standalone offline replay file, and the Race tab's charts (``charts``: the shared layout and the
time-vs-length benchmark; ``frontier``: quality vs parallelism; ``race_explain``: break-even and
projection). Pure Python + numpy: no torch, no gradio (the app wires these
into components; ``dlm_core.viz.stream`` documents when it sends what).
"""

from ..state import MASK_GLYPH
from .canvas import (
    BIN_LABELS,
    PALETTE,
    canvas_html,
    confidence_bin,
    empty_canvas_html,
    inspector_html,
    legend_html,
    stats_html,
    visible,
)
from .charts import bench_figure, chart_layout
from .edit import EditError, edit_canvas, edit_prompt, editable_positions
from .export import standalone_html
from .frontier import frontier_dict
from .heatmap import CURSOR_JS, empty_heatmap_dict, heatmap_dict, to_json
from .stream import UpdatePolicy
from .view import Frame, RunMeta, RunView

__all__ = [
    "BIN_LABELS",
    "CURSOR_JS",
    "MASK_GLYPH",
    "PALETTE",
    "EditError",
    "Frame",
    "RunMeta",
    "RunView",
    "UpdatePolicy",
    "bench_figure",
    "canvas_html",
    "chart_layout",
    "confidence_bin",
    "edit_canvas",
    "edit_prompt",
    "editable_positions",
    "empty_canvas_html",
    "empty_heatmap_dict",
    "frontier_dict",
    "heatmap_dict",
    "inspector_html",
    "legend_html",
    "standalone_html",
    "stats_html",
    "to_json",
    "visible",
]
