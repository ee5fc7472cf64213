"""``SamplerConfig``: every knob of a denoising run, validated in one place.

The config is a frozen dataclass; ``__post_init__`` calls ``validate()``, which checks every field's
type and range and raises ``ConfigError(field, message)``. The message always names the field and the
allowed range, e.g. ``steps must be an integer in [1, 2048] or None, got 0``. Wrong types (a string
for ``steps``, ``True`` for an integer, NaN for a float) get the same treatment, never a TypeError.

Checks that need the model or the prompt (``steps`` against the number of generation slots, a
strategy an autoregressive model cannot run, prompt + generation longer than the model) happen when
``denoise`` starts, before any forward pass, and raise ``ConfigError`` / ``PromptError`` naming the
field in the same way.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import asdict, dataclass, fields
from typing import Any

from .strategies import STRATEGIES

MAX_GEN_LENGTH = 2048
MAX_STEPS = 2048
MAX_BLOCK_LENGTH = 2048
MAX_SEED = 2**63 - 1
MAX_TOP_K = 1_000_000
MAX_TEMPERATURE = 10.0
MAX_FACTOR = 100.0
MAX_GAMMA = 1000.0
MAX_CFG_SCALE = 100.0
REMASK_MODES = ("cap", "rescale", "confidence")
CACHE_MODES = ("prefix", "dual")


class ConfigError(ValueError):
    """A sampler setting is out of range or of the wrong type. ``field`` names the setting."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field
        self.message = message


def _describe(value: Any) -> str:
    return f"{value!r} ({type(value).__name__})"


def _is_int(value: Any) -> bool:
    # bool is an int subclass in Python; a flag passed where a count belongs is a bug, not a 1.
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_real(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


@dataclass(frozen=True)
class SamplerConfig:
    """How to denoise. Defaults give LLaDA's greedy low-confidence sampler, one token per step.

    Length and schedule
        gen_length: masks appended after the prompt, in [0, 2048]. May be 0 when the prompt has
            ``[MASK]`` placeholders (pure infilling); generation slots = placeholders + appended.
        steps: model steps (forward evaluations, 2 under CFG). None = one step per generation slot.
            Must lie in [number of blocks, number of slots]; checked when the prompt is known.
            ``left_to_right`` needs exactly one step per slot. ``threshold``, ``factor``,
            ``entropy_bound`` and ``origin`` are adaptive: ``steps`` is their budget (upper bound).
        block_length: semi-autoregressive block size in slots (LLaDA). None = one block.
    Unmasking
        strategy: a name from ``strategies.STRATEGIES``.
        threshold: Fast-dLLM confidence threshold in (0, 1] (strategy ``threshold``).
        factor: Fast-dLLM factor f in (0, 100] (strategy ``factor``).
        gamma: EB-sampler entropy bound in nats, in [0, 1000] (strategy ``entropy_bound``).
        eps: Dream's final timestep in (0, 1) for ``maskgit_plus``/``topk_margin``/``entropy``/``origin``.
        order_temperature: Dream's ``alg_temp`` in [0, 10] for the strategies that rank slots by
            confidence (``low_confidence``, ``maskgit_plus``, ``topk_margin``, ``entropy``): 0 commits
            the most confident; > 0 draws the slots to commit with probability proportional to
            exp(confidence / order_temperature) (``strategies.rank_select``). Must be 0 for others.
    Sampling
        temperature: 0 = greedy (argmax); > 0 = Gumbel-max sampling at that temperature, in [0, 10].
        top_k: keep the k most likely tokens (None = off). top_p: nucleus mass in (0, 1] (None = off).
        seed: seeds the run's private torch.Generator; same seed + config = identical trajectory.
        cfg_scale: LLaDA classifier-free guidance scale w >= 0; 0 = off. A guided step costs 2 NFE.
    Speed
        cache: None, "prefix" or "dual": Fast-dLLM key/value caching for diffusion models
            (``sampler.cache``); an approximation, refreshed at every block boundary. Not combined
            with cfg_scale > 0. Autoregressive models always decode with their exact KV cache.
    Revision (ReMDM)
        remask: None, "cap", "rescale" or "confidence" (see ``denoise.remask_positions``).
        eta: the ReMDM eta in [0, 1]: the cap (``cap``, ``confidence``) or the scale (``rescale``).
        remask_t_on / remask_t_off: re-mask only at steps whose block time t (fraction of the block
            still masked when the step starts) satisfies t_off < t <= t_on; 0 <= t_off < t_on <= 1.
    Recording
        record_topk: also record the 5 most likely tokens and their probabilities per position.
    """

    gen_length: int = 64
    steps: int | None = None
    block_length: int | None = None
    strategy: str = "low_confidence"
    temperature: float = 0.0
    top_k: int | None = None
    top_p: float | None = None
    seed: int = 0
    threshold: float = 0.9
    factor: float = 1.0
    gamma: float = 0.1
    eps: float = 1e-3
    order_temperature: float = 0.0
    remask: str | None = None
    eta: float = 0.05
    remask_t_on: float = 1.0
    remask_t_off: float = 0.0
    cfg_scale: float = 0.0
    cache: str | None = None
    record_topk: bool = False

    def __post_init__(self) -> None:
        self.validate()

    # -- the one validation routine ---------------------------------------------------------------

    def validate(self) -> None:
        """Check every field's type and range, then the cross-field rules. Raises ``ConfigError``."""
        self._check_int("gen_length", 0, MAX_GEN_LENGTH)
        self._check_int("steps", 1, MAX_STEPS, optional=True)
        self._check_int("block_length", 1, MAX_BLOCK_LENGTH, optional=True)
        names = ", ".join(sorted(STRATEGIES))
        if not isinstance(self.strategy, str) or self.strategy not in STRATEGIES:
            raise ConfigError("strategy", f"strategy must be one of {names}, got {_describe(self.strategy)}")
        self._check_float("temperature", 0.0, MAX_TEMPERATURE)
        self._check_int("top_k", 1, MAX_TOP_K, optional=True)
        self._check_float("top_p", 0.0, 1.0, optional=True, open_low=True)
        self._check_int("seed", 0, MAX_SEED)
        self._check_float("threshold", 0.0, 1.0, open_low=True)
        self._check_float("factor", 0.0, MAX_FACTOR, open_low=True)
        self._check_float("gamma", 0.0, MAX_GAMMA)
        self._check_float("eps", 0.0, 1.0, open_low=True, open_high=True)
        self._check_float("order_temperature", 0.0, MAX_TEMPERATURE)
        if self.remask is not None and (not isinstance(self.remask, str) or self.remask not in REMASK_MODES):
            raise ConfigError(
                "remask", f"remask must be None or one of {', '.join(REMASK_MODES)}, got {_describe(self.remask)}"
            )
        self._check_float("eta", 0.0, 1.0)
        self._check_float("remask_t_on", 0.0, 1.0)
        self._check_float("remask_t_off", 0.0, 1.0)
        self._check_float("cfg_scale", 0.0, MAX_CFG_SCALE)
        if self.cache is not None and (not isinstance(self.cache, str) or self.cache not in CACHE_MODES):
            raise ConfigError("cache", f"cache must be None or one of {', '.join(CACHE_MODES)}, got {_describe(self.cache)}")
        if self.cache is not None and self.cfg_scale > 0:
            raise ConfigError("cache", f"cache must be None when cfg_scale > 0 (got cache={self.cache!r}, cfg_scale={self.cfg_scale})")
        if not isinstance(self.record_topk, bool):
            raise ConfigError("record_topk", f"record_topk must be True or False, got {_describe(self.record_topk)}")

        # Cross-field rules that need no model.
        if self.remask_t_off >= self.remask_t_on:
            raise ConfigError(
                "remask_t_off",
                f"remask_t_off must be < remask_t_on ({self.remask_t_on}), got {self.remask_t_off}",
            )
        spec = STRATEGIES[self.strategy]
        if self.order_temperature > 0 and not spec.ranked:
            ranked = ", ".join(name for name, other in STRATEGIES.items() if other.ranked)
            raise ConfigError(
                "order_temperature",
                f"order_temperature must be 0 with strategy {self.strategy} (it applies to {ranked}), "
                f"got {self.order_temperature}",
            )
        if self.remask is not None and not spec.allows_remask:
            raise ConfigError(
                "remask", f"remask must be None with strategy {self.strategy} (it commits in a fixed order)"
            )
        if self.steps is not None and self.gen_length > 0:
            # Placeholders only add slots, so the appended region alone gives lower bounds.
            blocks = -(-self.gen_length // (self.block_length or self.gen_length))
            if self.steps < blocks:
                raise ConfigError(
                    "steps",
                    f"steps must be >= the number of blocks ({blocks} = ceil(gen_length / block_length)), "
                    f"got {self.steps}",
                )
            if spec.one_per_step and self.steps < self.gen_length:
                raise ConfigError(
                    "steps",
                    f"steps must equal the number of generation slots (>= gen_length {self.gen_length}) "
                    f"for strategy {self.strategy}, or be None, got {self.steps}",
                )

    def _check_int(self, name: str, low: int, high: int, optional: bool = False) -> None:
        value = getattr(self, name)
        if optional and value is None:
            return
        if not _is_int(value) or not low <= value <= high:
            none = " or None" if optional else ""
            raise ConfigError(name, f"{name} must be an integer in [{low}, {high}]{none}, got {_describe(value)}")
        object.__setattr__(self, name, int(value))  # numpy ints -> plain int, so configs compare and serialise

    def _check_float(
        self,
        name: str,
        low: float,
        high: float,
        optional: bool = False,
        open_low: bool = False,
        open_high: bool = False,
    ) -> None:
        value = getattr(self, name)
        if optional and value is None:
            return
        ok = _is_real(value) and (isinstance(value, numbers.Rational) or math.isfinite(value))  # 10**400: no overflow
        if ok:
            ok = (value > low if open_low else value >= low) and (value < high if open_high else value <= high)
        if not ok:
            interval = f"{'(' if open_low else '['}{low:g}, {high:g}{')' if open_high else ']'}"
            none = " or None" if optional else ""
            raise ConfigError(name, f"{name} must be a finite number in {interval}{none}, got {_describe(value)}")
        object.__setattr__(self, name, float(value))

    # -- conversions ------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict of every field."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any) -> SamplerConfig:
        """Build from a dict (JSON, CLI); unknown keys and wrong types raise ``ConfigError``."""
        if not isinstance(data, dict):
            raise ConfigError("config", f"config must be an object of settings, got {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(str(key) for key in data if key not in known)
        if unknown:
            raise ConfigError(unknown[0], f"unknown setting {unknown[0]!r}; known settings: {', '.join(sorted(known))}")
        return cls(**data)

    def replace(self, **changes: Any) -> SamplerConfig:
        """A copy with some fields changed (validated again)."""
        return self.from_dict({**self.to_dict(), **changes})
