"""``SamplerConfig``: every knob of a denoising run, validated in one place.

The config is a frozen dataclass; ``__post_init__`` calls ``validate()``, which checks every field's
type and range and raises ``ConfigError(field, message)``. The message always names the field and the
allowed range, e.g. ``steps must be an integer in [1, 2048] or None, got 0``. Wrong types (a string
for ``steps``, ``True`` for an integer, NaN for a float) get the same treatment, never a TypeError.

The settings table: every field is declared with ``setting(default, Setting(...))``, which holds
what people see of it: its label, a one-line help, its kind and allowed range (``validate`` reads
them), and, for the settings the app shows, its widget (``Widget``: the app's range, step, starting
value and help text). The CLI's flags, the app's widgets and example defaults, and the tests' API
defaults are all built from it (``SETTINGS``). ``steps_range`` is the one rule for how many steps a
run may take.

Checks that need the model or the prompt (``steps`` against the number of generation slots, a
strategy an autoregressive model cannot run, prompt + generation longer than the model) happen when
``denoise`` starts, before any forward pass, and raise ``ConfigError`` / ``PromptError`` naming the
field in the same way.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from .rules import STRATEGY_RULES

MAX_GEN_LENGTH = 2048
MAX_STEPS = 2048
MAX_BLOCK_LENGTH = 2048
MAX_SEED = 2**63 - 1
MAX_TOP_K = 1_000_000
MAX_TEMPERATURE = 10.0
MAX_FACTOR = 100.0
MAX_GAMMA = 1000.0
MAX_CFG_SCALE = 100.0
MAX_EDIT_POST_STEPS = 64
REMASK_MODES = ("cap", "rescale", "confidence")
CACHE_MODES = ("prefix", "dual", "window")
NOISE_MODES = ("mask", "uniform")
MAX_STOP_STABILITY = 100
SUFFIX_WINDOW = 64  # the window cache's default: two blocks of 32 after the active one


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
class Widget:
    """How the app shows a setting: the range and step of its slider (or the labelled choices of its
    dropdown), its starting value and its help text. The app's range is narrower than the sampler's
    where a bigger value would make the canvas unreadable; ``off`` is the widget value that stands for
    the config's None (0 blocks, top-k 0, top-p 1, "off")."""

    info: str
    low: float | None = None
    high: float | None = None
    step: float | None = None  # None for a number box (seed) or a dropdown
    value: Any = None
    off: Any = None
    choices: tuple[tuple[str, str], ...] = ()  # (label, value) for a dropdown


@dataclass(frozen=True)
class Setting:
    """One sampler setting as people see it. ``kind`` is "int", "float", "choice" or "bool"; ints and
    floats lie in [low, high] (``open_low`` / ``open_high`` exclude an end), choices in ``choices``
    (None = every strategy); ``optional`` also allows None. ``widget`` is None for settings the app
    does not show."""

    label: str
    help: str
    kind: str
    low: float | None = None
    high: float | None = None
    open_low: bool = False
    open_high: bool = False
    optional: bool = False
    choices: tuple[str, ...] | None = ()
    widget: Widget | None = None

    def interval(self) -> str:
        """The allowed range as written in messages: [0, 2048], (0, 1]."""
        if self.kind == "int":
            return f"[{int(self.low)}, {int(self.high)}]"
        return f"{'(' if self.open_low else '['}{self.low:g}, {self.high:g}{')' if self.open_high else ']'}"


def setting(default: Any, spec: Setting) -> Any:
    """A ``SamplerConfig`` field with its default and its ``Setting`` (read back via ``SETTINGS``)."""
    return field(default=default, metadata={"setting": spec})


REMASK_LABELS = (("Off", "off"), ("Cap (ReMDM-cap)", "cap"), ("Rescale (ReMDM-rescale)", "rescale"),
                 ("Least sure first (ReMDM-conf)", "confidence"))
CACHE_TEXT = {None: "no cache", "prefix": "prefix cache", "dual": "dual cache", "window": "window cache"}  # in a sentence
CACHE_LABELS = (("Off (exact)", "off"), ("Prefix cache", "prefix"), ("Dual cache (prefix + suffix)", "dual"),
                ("Window cache (finished blocks once + nearby suffix)", "window"))
NOISE_LABELS = (("Masks (masked diffusion)", "mask"), ("Random tokens (uniform-state, DiffusionGemma-style)", "uniform"))
# The settings a uniform-state run does not have: each must be off (name -> what "off" is, for messages).
UNIFORM_OFF = {"block_length": None, "remask": None, "edit_threshold": None, "cache": None, "cfg_scale": 0.0}


@dataclass(frozen=True)
class SamplerConfig:
    """How to denoise. Defaults give LLaDA's greedy low-confidence sampler, one token per step.

    Length and schedule
        gen_length: masks appended after the prompt, in [0, 2048]. May be 0 when the prompt has
            ``[MASK]`` placeholders (pure infilling); generation slots = placeholders + appended.
        steps: model steps (forward evaluations, 2 under CFG). None = one step per generation slot.
            Must lie in [number of blocks, number of slots]; checked when the prompt is known. For a
            model that runs its own sampler (DiffusionGemma, LLaDA 2.x) steps are *per block* (canvas)
            and its adapter checks their range (``ExternalAdapter.steps_range``).
            ``left_to_right`` needs exactly one step per slot. ``threshold``, ``factor``,
            ``entropy_bound`` and ``origin`` are adaptive: ``steps`` is their budget (upper bound).
        block_length: semi-autoregressive block size in slots (LLaDA). None = one block.
    Unmasking
        strategy: a name from ``rules.STRATEGY_RULES`` (= ``strategies.STRATEGIES``).
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
        cache: None, "prefix", "dual" or "window": key/value caching for diffusion models
            (``sampler.cache``), an approximation. "prefix" and "dual" (Fast-dLLM) recompute the whole
            canvas at every block boundary; "window" computes each finished block once and drops
            [MASK] slots more than ``suffix_window`` after the block (DPad). Not combined with
            cfg_scale > 0. Autoregressive models always decode with their exact KV cache.
        suffix_window: cache "window" only: how many [MASK] slots after the block stay in the
            forward, in [0, 2048]; farther ones are dropped.
    Revision (ReMDM)
        remask: None, "cap", "rescale" or "confidence" (see ``denoise.remask_positions``).
        eta: the ReMDM eta in [0, 1]: the cap (``cap``, ``confidence``) or the scale (``rescale``).
        remask_t_on / remask_t_off: re-mask only at steps whose block time t (fraction of the block
            still masked when the step starts) satisfies t_off < t <= t_on; 0 <= t_off < t_on <= 1.
    Revision (token editing, LLaDA 2.1)
        edit_threshold: tau in (0, 1] or None (off). At every step a token written earlier in the
            active block is replaced by the model's top candidate there when that candidate is a
            different token with probability >= tau (``loop.edit_positions``). Diffusion models only.
        edit_post_steps: None (off) or n in [1, 64]: after a block's last mask is written, up to n more
            steps that only edit (no commits); a block ends at the first that edits nothing
            (LLaDA 2.1's post-mask editing; diffusers' ``max_post_steps`` = n - 1). Needs edit_threshold.
            One difference: diffusers' ``LLaDA2Pipeline`` skips them when a block's last mask is written
            at its last budgeted step; ours always take them (``tests/test_sampler_editing.py`` checks
            runs where both do, step for step).
    Noise (``sampler.uniform``)
        noise: "mask" (masked diffusion: slots start as [MASK], the strategy unmasks them) or "uniform"
            (uniform-state diffusion as DiffusionGemma decodes: slots start as random tokens; every step
            samples a draft of every slot, accepts the lowest-entropy slots within the entropy budget
            ``gamma`` and renoises the rest; ``sampler.uniform``). Under "uniform" the strategy and its
            knobs do not apply; ``steps`` is the number of denoising steps (None = one per slot, any
            number in [1, 2048]); ``temperature`` > 0 is the schedule's first temperature t_max;
            ``block_length``, ``remask``, ``edit_threshold``, ``cache`` and ``cfg_scale`` must be off.
        final_temperature: uniform only: the schedule's t_min in [0, temperature]; the temperature falls
            linearly from t_max to t_min (DiffusionGemma's ``LinearTemperatureScheduleLogitsProcessor``).
            None = a constant ``temperature``.
        stop_confidence: uniform only: stop early once the argmax canvas is stable and the mean entropy of
            the slots (nats, temperature-scaled) is below this, in (0, 10] (DiffusionGemma's
            ``StableAndConfidentStoppingCriteria``); None = run every step.
        stop_stability: steps the argmax canvas must stay unchanged for that stop, in [0, 100].
    Recording
        record_topk: also record the 5 most likely tokens and their probabilities per position.
    """

    gen_length: int = setting(64, Setting(
        "Length", "masks appended after the prompt, 0..2048 (may be 0 with [MASK] placeholders)",
        "int", 0, MAX_GEN_LENGTH,
        widget=Widget("Tokens to add after your prompt (0 = only fill the [MASK] blanks).", 0, 512, 1, 64)))
    steps: int | None = setting(None, Setting(
        "Steps", "model steps; none = one per generation slot", "int", 1, MAX_STEPS, optional=True,
        widget=Widget("Denoising steps (model calls). Fewer steps = more tokens written per step.", 1, 512, 1, 32)))
    block_length: int | None = setting(None, Setting(
        "Block length", "semi-autoregressive block size; none = one block", "int", 1, MAX_BLOCK_LENGTH, optional=True,
        widget=Widget("Write in chunks of this many tokens, left to right (0 = all in one chunk).", 0, 512, 1, 32,
                      off=0)))
    strategy: str = setting("low_confidence", Setting(
        "Strategy", f"unmasking strategy: {', '.join(STRATEGY_RULES)}", "choice", choices=None,
        widget=Widget("How the model picks which masks to fill at each step.", value="low_confidence")))
    temperature: float = setting(0.0, Setting(
        "Temperature", "0 = greedy; > 0 = Gumbel-max sampling", "float", 0.0, MAX_TEMPERATURE,
        widget=Widget("0 = always the most likely token; higher = more random, more varied.", 0, 2, 0.05, 1.0)))
    top_k: int | None = setting(None, Setting(
        "Top-k", "keep the k most likely tokens (none = off)", "int", 1, MAX_TOP_K, optional=True,
        widget=Widget("Only consider the k most likely tokens (0 = no limit).", 0, 200, 1, 0, off=0)))
    top_p: float | None = setting(None, Setting(
        "Top-p", "nucleus mass in (0, 1] (none = off)", "float", 0.0, 1.0, open_low=True, optional=True,
        widget=Widget("Only consider the likeliest tokens that cover this much probability (1 = no limit).",
                      0.05, 1, 0.05, 0.95, off=1.0)))
    seed: int = setting(0, Setting(
        "Seed", "seed of the run's private generator", "int", 0, MAX_SEED,
        widget=Widget("Same seed + same settings = exactly the same run.", 0, MAX_SEED, None, 0)))
    threshold: float = setting(0.9, Setting(
        "Threshold", "Fast-dLLM confidence threshold (strategy threshold)", "float", 0.0, 1.0, open_low=True,
        widget=Widget("Write every mask the model is at least this sure about (at least one per step).",
                      0.05, 1, 0.05, 0.9)))
    factor: float = setting(1.0, Setting(
        "Factor", "Fast-dLLM factor f (strategy factor)", "float", 0.0, MAX_FACTOR, open_low=True,
        widget=Widget("Fast-dLLM's f: larger = more tokens per step, more risk of clashing tokens.", 0.1, 10, 0.1, 1.0)))
    gamma: float = setting(0.1, Setting(
        "Entropy budget γ", "EB-sampler entropy bound in nats (strategy entropy_bound)", "float", 0.0, MAX_GAMMA,
        widget=Widget("How much doubt one step may take on: it writes the surest masks while their summed "
                      "uncertainty stays under γ. 0 = about one token per step; larger = more tokens per step, "
                      "more risk of clashing words.", 0, 10, 0.1, 0.1)))
    eps: float = setting(1e-3, Setting(
        "Eps", "Dream's final timestep (Dream strategies)", "float", 0.0, 1.0, open_low=True, open_high=True,
        widget=Widget("Dream's final noise level (small values are standard).", 0.0001, 0.5, 0.0001, 0.001)))
    order_temperature: float = setting(0.0, Setting(
        "Order randomness", "Dream's alg_temp: 0 = most confident first; > 0 = sample which slots to commit",
        "float", 0.0, MAX_TEMPERATURE,
        widget=Widget("0 = always write the surest masks first; a little randomness (Dream's alg_temp) "
                      "stops the model looping on its favourite phrases.", 0, 1, 0.01,
                      value=None)))  # None: the app starts at the value measured for its default model
    remask: str | None = setting(None, Setting(
        "Re-masking", f"ReMDM re-masking: none, {', '.join(REMASK_MODES)}", "choice", choices=REMASK_MODES,
        optional=True,
        widget=Widget("Let the model take back written tokens and rewrite them.", value="off", off="off",
                      choices=REMASK_LABELS)))
    eta: float = setting(0.05, Setting(
        "Re-masking strength (eta)", "ReMDM eta: cap / scale of the re-masking probability", "float", 0.0, 1.0,
        widget=Widget("The largest share of written tokens that may be re-masked per step.", 0, 1, 0.01, 0.05)))
    remask_t_on: float = setting(1.0, Setting(
        "Re-mask from t", "re-mask only while the block's masked fraction t <= this", "float", 0.0, 1.0,
        widget=Widget("Re-mask only while at most this fraction of the block is still masked…", 0, 1, 0.05, 1.0)))
    remask_t_off: float = setting(0.0, Setting(
        "Re-mask until t", "... and t > this", "float", 0.0, 1.0,
        widget=Widget("…and more than this fraction is.", 0, 1, 0.05, 0.0)))
    edit_threshold: float | None = setting(None, Setting(
        "Token editing τ", "LLaDA 2.1 token editing: rewrite a written token of the active block when the model's "
        "top candidate there is another token with probability >= τ, in (0, 1] (none = off)",
        "float", 0.0, 1.0, open_low=True, optional=True,
        widget=Widget("Let the model rewrite a token it already wrote when it is now at least this sure of a "
                      "different one (LLaDA 2.1 editing; 0 = off). Unlike re-masking, the token is replaced "
                      "directly.", 0, 1, 0.05, 0.0, off=0.0)))
    edit_post_steps: int | None = setting(None, Setting(
        "Edit-only steps", "LLaDA 2.1: after a block's last mask is written, up to this many more steps that "
        "only edit written tokens (the block ends at the first that edits nothing); needs edit_threshold, "
        "in [1, 64] (none = off)", "int", 1, MAX_EDIT_POST_STEPS, optional=True,
        widget=Widget("After a block is written, let the model keep editing it for up to this many extra steps "
                      "(LLaDA 2.1; needs token editing; 0 = off).", 0, MAX_EDIT_POST_STEPS, 1, 0, off=0)))
    cfg_scale: float = setting(0.0, Setting(
        "Guidance (CFG)", "classifier-free guidance scale (0 = off; costs 2 NFE per step)", "float", 0.0, MAX_CFG_SCALE,
        widget=Widget("> 0 makes the text follow the prompt more closely; costs 2 model calls per step.", 0, 5, 0.1, 0.0)))
    cache: str | None = setting(None, Setting(
        "KV cache", "KV cache for diffusion models: none, prefix, dual (Fast-dLLM; refreshed per block), window "
        "(finished blocks computed once, far masks dropped); all approximate",
        "choice", choices=CACHE_MODES, optional=True,
        widget=Widget("Reuse the model's work on the text outside the current block: faster, slightly approximate "
                      "(Fast-dLLM). Best with a block length. Not with guidance.", value="off", off="off",
                      choices=CACHE_LABELS)))
    suffix_window: int = setting(SUFFIX_WINDOW, Setting(
        "Suffix window", "cache window only: [MASK] slots after the block that stay in the forward; farther ones "
        "are dropped (DPad)", "int", 0, MAX_GEN_LENGTH))
    noise: str = setting("mask", Setting(
        "Noise", "what generation slots start as: mask ([MASK], unmasked by the strategy) or uniform (random "
        "tokens, refined: DiffusionGemma's entropy-bound acceptance and renoising)", "choice", choices=NOISE_MODES,
        widget=Widget("What the blank canvas starts as. Masks: the model fills them in. Random tokens: the model "
                      "keeps the tokens it is sure of and re-draws the rest at random each step, until the canvas "
                      "settles (uniform-state diffusion; best with a model trained to correct tokens).",
                      value="mask", choices=NOISE_LABELS)))
    final_temperature: float | None = setting(None, Setting(
        "Final temperature", "uniform noise: the temperature falls linearly from temperature (first step) to "
        "this (last step), in [0, temperature]; none = constant", "float", 0.0, MAX_TEMPERATURE, optional=True,
        widget=Widget("Random tokens only: the temperature falls from the one above to this by the last step "
                      "(DiffusionGemma anneals 0.8 to 0.4).", 0, 2, 0.05, 0.5)))
    stop_confidence: float | None = setting(None, Setting(
        "Stop when sure", "uniform noise: stop once the argmax canvas is stable and its mean entropy (nats) is below "
        "this, in (0, 10] (none = run every step)", "float", 0.0, 10.0, open_low=True, optional=True,
        widget=Widget("Random tokens only: stop early once the canvas stops changing and the model's average "
                      "uncertainty is below this (0 = always run every step).", 0, 2, 0.05, 0.0, off=0.0)))
    stop_stability: int = setting(1, Setting(
        "Stable for", "uniform noise: steps the argmax canvas must stay unchanged for the early stop", "int",
        0, MAX_STOP_STABILITY))
    record_topk: bool = setting(False, Setting("Record top-5", "record the 5 most likely tokens per position", "bool"))

    def __post_init__(self) -> None:
        self.validate()

    # -- the one validation routine ---------------------------------------------------------------

    def validate(self) -> None:
        """Check every field's type and range (from its ``Setting``), then the cross-field rules.
        Raises ``ConfigError``."""
        for name, spec in SETTINGS.items():
            self._check(name, spec)

        # Cross-field rules that need no model.
        if self.cache is not None and self.cfg_scale > 0:
            raise ConfigError("cache", f"cache must be None when cfg_scale > 0 (got cache={self.cache!r}, cfg_scale={self.cfg_scale})")
        if self.remask_t_off >= self.remask_t_on:
            raise ConfigError(
                "remask_t_off",
                f"remask_t_off must be < remask_t_on ({self.remask_t_on}), got {self.remask_t_off}",
            )
        self._check_noise()
        spec = STRATEGY_RULES[self.strategy]
        if self.order_temperature > 0 and not spec.ranked:
            ranked = ", ".join(name for name, other in STRATEGY_RULES.items() if other.ranked)
            raise ConfigError(
                "order_temperature",
                f"order_temperature must be 0 with strategy {self.strategy} (it applies to {ranked}), "
                f"got {self.order_temperature}",
            )
        if self.edit_threshold is not None and not spec.allows_remask:
            raise ConfigError(
                "edit_threshold",
                f"edit_threshold must be None with strategy {self.strategy} (it commits in a fixed order)",
            )
        if self.edit_post_steps is not None and self.edit_threshold is None:
            raise ConfigError(
                "edit_post_steps",
                f"edit_post_steps must be None when edit_threshold is None (edit-only steps edit with it), "
                f"got {self.edit_post_steps}",
            )
        if self.remask is not None and not spec.allows_remask:
            raise ConfigError(
                "remask", f"remask must be None with strategy {self.strategy} (it commits in a fixed order)"
            )
        # What ``steps`` counts depends on the model: our sampler's steps are in total (at least one
        # per block, checked against the prompt's slots when ``denoise`` starts); a model with its own
        # sampler counts them per block (its adapter checks its range). So no blocks rule here.
        if self.steps is not None and self.gen_length > 0:
            if spec.one_per_step and self.noise == "mask" and self.steps < self.gen_length:
                raise ConfigError(
                    "steps",
                    f"steps must equal the number of generation slots (>= gen_length {self.gen_length}) "
                    f"for strategy {self.strategy}, or be None, got {self.steps}",
                )

    def _check_noise(self) -> None:
        """The rules of ``noise``: what a uniform-state run needs and which settings only it has."""
        if self.noise == "mask":
            for name in ("final_temperature", "stop_confidence"):
                if getattr(self, name) is not None:
                    raise ConfigError(name, f"{name} must be None with noise 'mask' (it applies to noise 'uniform'), "
                                            f"got {getattr(self, name)}")
            return
        for name, off in UNIFORM_OFF.items():
            if getattr(self, name) != off:
                raise ConfigError(
                    name, f"{name} must be {off} with noise 'uniform' (a uniform-state run refines one canvas of "
                          f"random tokens and renoises instead), got {getattr(self, name)!r}")
        if self.steps is not None and self.steps >= MAX_STEPS:
            raise ConfigError("steps", f"steps must be an integer in [1, {MAX_STEPS - 1}] or None with noise 'uniform' "
                                       f"(the answer is recorded as one more state), got {self.steps}")
        if self.temperature <= 0:
            raise ConfigError("temperature", "temperature must be in (0, 10] with noise 'uniform' (it is the first "
                                             f"temperature of the schedule; drafts are sampled), got {self.temperature}")
        if self.final_temperature is not None and self.final_temperature > self.temperature:
            raise ConfigError("final_temperature", f"final_temperature must be in [0, temperature = {self.temperature}] "
                                                   f"(the temperature falls), got {self.final_temperature}")

    def _check(self, name: str, spec: Setting) -> None:
        """One field against its ``Setting``: kind, then range or choices; None only if optional.
        Numbers are normalised to plain int / float (numpy scalars too), so configs compare and serialise."""
        value = getattr(self, name)
        if spec.optional and value is None:
            return
        none = " or None" if spec.optional else ""
        if spec.kind == "int":
            if not _is_int(value) or not spec.low <= value <= spec.high:
                raise ConfigError(name, f"{name} must be an integer in {spec.interval()}{none}, got {_describe(value)}")
            object.__setattr__(self, name, int(value))
        elif spec.kind == "float":
            ok = _is_real(value) and (isinstance(value, numbers.Rational) or math.isfinite(value))  # 10**400: no overflow
            if ok:
                above = value > spec.low if spec.open_low else value >= spec.low
                ok = above and (value < spec.high if spec.open_high else value <= spec.high)
            if not ok:
                raise ConfigError(name, f"{name} must be a finite number in {spec.interval()}{none}, got {_describe(value)}")
            object.__setattr__(self, name, float(value))
        elif spec.kind == "choice":
            allowed = sorted(STRATEGY_RULES) if spec.choices is None else spec.choices
            if not isinstance(value, str) or value not in allowed:
                one_of = "None or one of" if spec.optional else "one of"
                raise ConfigError(name, f"{name} must be {one_of} {', '.join(allowed)}, got {_describe(value)}")
        elif not isinstance(value, bool):
            raise ConfigError(name, f"{name} must be True or False, got {_describe(value)}")

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


# The settings table, in field order: name -> Setting.
SETTINGS: dict[str, Setting] = {f.name: f.metadata["setting"] for f in fields(SamplerConfig)}


def steps_range(slots: int, block_length: int | None, one_per_step: bool = False) -> tuple[int, int]:
    """The one steps rule: a run over ``slots`` generation slots in blocks of ``block_length`` (None =
    one block) takes at least one step per block, ceil(slots / block_length), and at most one step per
    slot; a strategy that writes one token per step (``one_per_step``) takes exactly one per slot."""
    if one_per_step:
        return slots, slots
    blocks = -(-slots // (block_length or slots)) if slots > 0 else 0
    return blocks, slots
