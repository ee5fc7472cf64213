"""The sampler: masked-diffusion decoding as a stream of ``StepState`` snapshots.

Public API: ``denoise`` / ``denoise_batch`` (the loop, ``loop.py``), ``SamplerConfig`` + ``ConfigError``
(settings, validated in one place), ``STRATEGIES`` (the unmasking rules), ``encode_prompt`` /
``parse_prompt`` + ``PromptError`` ([MASK] placeholders), ``canvas_prompt`` (a canvas given as token
ids), ``uniform_batch`` (uniform-state decoding, ``config.noise == "uniform"``), ``StepState`` (one snapshot: numpy only). No UI code here, and nothing imports
``dlm_core.trajectory`` (it builds on these types).

The settings and prompts are plain Python and load at once; the loop, the schedule and the strategies
run torch and load on first use of one of their names (PEP 562 ``__getattr__``), so that
``SamplerConfig``, a prompt or a recorded ``Trajectory`` can be used without importing torch.
"""

import importlib

from ..state import StepState
from .config import NOISE_MODES, REMASK_MODES, ConfigError, SamplerConfig
from .prompt import EncodedPrompt, PromptError, Segment, canvas_prompt, encode_prompt, parse_prompt, prompt_text

# Torch-backed names, by the module that defines them.
_TORCH_MODULES = {
    "loop": ("FullForward", "denoise", "denoise_batch", "generate", "edit_positions", "remask_positions", "run_to_end", "tokens_per_forward"),
    "schedule": ("allocate_steps", "num_transfer_tokens", "split_blocks"),
    "strategies": ("STRATEGIES", "Selection", "StepContext", "StrategySpec", "strategy"),
    "uniform": ("entropy_bound_accept", "noise_ids", "uniform_batch"),
}
_MODULE_OF = {name: module for module, names in _TORCH_MODULES.items() for name in names}


def __getattr__(name: str):
    """Import the torch-backed module that defines ``name`` the first time it is asked for."""
    if name not in _MODULE_OF:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_MODULE_OF[name]}", __name__), name)
    globals()[name] = value  # later look-ups skip __getattr__
    return value


__all__ = [
    "NOISE_MODES",
    "REMASK_MODES",
    "ConfigError",
    "EncodedPrompt",
    "PromptError",
    "SamplerConfig",
    "Segment",
    "StepState",
    "canvas_prompt",
    "encode_prompt",
    "parse_prompt",
    "prompt_text",
    *_MODULE_OF,
]
