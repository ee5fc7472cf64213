"""Display layer: a run as HTML (token canvas, legend, inspector, stats), a compact plotly heatmap
and a standalone offline replay file. Pure Python + numpy: no torch, no gradio (the app wires these
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
from .edit import EditError, edit_canvas, edit_prompt, editable_positions
from .export import standalone_html
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
    "canvas_html",
    "confidence_bin",
    "edit_canvas",
    "edit_prompt",
    "editable_positions",
    "empty_canvas_html",
    "empty_heatmap_dict",
    "heatmap_dict",
    "inspector_html",
    "legend_html",
    "standalone_html",
    "stats_html",
    "to_json",
    "visible",
]
