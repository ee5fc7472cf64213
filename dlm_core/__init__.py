"""dlm_core: the Diffusion Canvas engine (models -> sampler -> trajectory, viz). No UI code here.

Importing the package loads nothing heavy: ``dlm_core.viz`` and ``dlm_core.state`` need numpy only.
The built-in model's Auto classes are registered where such a model is loaded (``models.load_canvas``).
"""

__version__ = "0.1.0"
