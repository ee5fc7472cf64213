"""The sampler: masked-diffusion decoding as a stream of ``StepState`` snapshots.

Public API: ``denoise`` / ``denoise_batch`` (the loop), ``SamplerConfig`` + ``ConfigError`` (settings,
validated in one place), ``STRATEGIES`` (the unmasking rules), ``encode_prompt`` / ``parse_prompt`` +
``PromptError`` ([MASK] placeholders), ``canvas_prompt`` (a canvas given as token ids), ``StepState``
(one snapshot: numpy only). No UI code here, and nothing imports ``dlm_core.trajectory`` (it builds
on these types).
"""

from .config import REMASK_MODES, ConfigError, SamplerConfig
from .denoise import FullForward, StepState, denoise, denoise_batch, remask_positions, run_to_end, tokens_per_forward
from .prompt import EncodedPrompt, PromptError, Segment, canvas_prompt, encode_prompt, parse_prompt, prompt_text
from .schedule import allocate_steps, num_transfer_tokens, split_blocks
from .strategies import STRATEGIES, Selection, StepContext, StrategySpec, strategy

__all__ = [
    "REMASK_MODES",
    "STRATEGIES",
    "ConfigError",
    "EncodedPrompt",
    "FullForward",
    "PromptError",
    "SamplerConfig",
    "Segment",
    "Selection",
    "StepContext",
    "StepState",
    "StrategySpec",
    "allocate_steps",
    "canvas_prompt",
    "denoise",
    "denoise_batch",
    "encode_prompt",
    "num_transfer_tokens",
    "parse_prompt",
    "prompt_text",
    "remask_positions",
    "run_to_end",
    "split_blocks",
    "strategy",
    "tokens_per_forward",
]
