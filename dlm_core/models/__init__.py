"""Models: anything that maps token ids to logits, behind one ``ModelAdapter`` interface."""

from .base import CharCodec, Codec, HFCodec, ModelAdapter
from .builtin import CanvasAdapter, load_canvas, tiny_random_model
from .canvas_lm import CanvasConfig, CanvasLM, register_auto_classes

__all__ = [
    "CanvasAdapter",
    "CanvasConfig",
    "CanvasLM",
    "CharCodec",
    "Codec",
    "HFCodec",
    "ModelAdapter",
    "load_canvas",
    "register_auto_classes",
    "tiny_random_model",
]
