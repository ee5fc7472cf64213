"""dlm_core: the Diffusion Canvas engine (models -> sampler -> trajectory -> viz). No UI code here."""

from .models.canvas_lm import register_auto_classes

register_auto_classes()

__version__ = "0.1.0"
