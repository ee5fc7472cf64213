"""``StepState`` and ``RunInfo``, the records every layer shares, and their constants. numpy only.

The sampler produces ``StepState`` snapshots (``dlm_core.sampler``), the trajectory records and
replays them (``dlm_core.trajectory``), the display draws them (``dlm_core.viz``); none of those
needs torch to read one, so the type lives here, below all of them, with nothing but numpy.

``step_state`` is the one way to build a state: per-step readings are given only at the positions
the step looked at (its *window*) and spread over the canvas (NaN / -1 elsewhere), and
``answer_end`` is derived from the tokens, so every producer (the diffusion loop, the cached
autoregressive decoder, a trajectory read from JSON) agrees on both.

``RunInfo`` is what a run is *of*: model, prompt and settings. A ``Trajectory`` is one (plus its
states), the display's ``RunMeta`` is one (plus what the display adds), so the display reads a
trajectory's metadata without importing the trajectory module or repeating its fields.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from dataclasses import field as dataclass_field
from typing import Any, NamedTuple

import numpy as np

TOPK = 5  # top-k tokens recorded per position with ``record_topk``
MASK_GLYPH = "\u2591"  # how a masked position is shown as text (a light shade block)
_NO_POSITIONS = np.zeros(0, dtype=np.int64)
_NO_POSITIONS.flags.writeable = False


@dataclass(frozen=True, eq=False)
class StepState:
    """The canvas after one model step (numpy / plain Python only, so UI layers need no torch).

    Per-position arrays have one entry per canvas position (prompt + generation slots) and are
    read-only. Fields:

    step: 0 for the initial canvas, then 1, 2, ... per model step.
    block: index of the block this step worked on (0 for the initial state).
    tokens (int64): ids after the step; masked positions hold ``model.mask_id``.
    masked (bool): still masked after the step. fixed (bool): prompt tokens, never changed.
    prompt_length: positions before the appended region; slots are ``~fixed``.
    committed / remasked (int64, sorted): positions unmasked / re-masked (ReMDM) by this step.
    confidence (float64): the strategy's score of its proposal at every slot that was masked in the
        active block when the step began (see each strategy's docstring); NaN everywhere else.
    prob (float64): the model's temperature-1 probability (guided, before truncation) of the token
        at each position of the active block: the proposal for slots masked when the step began,
        the committed token otherwise (so low values show doubt about earlier commits); NaN elsewhere.
    proposal (int64): x0 at slots masked when the step began, -1 elsewhere.
    nfe: cumulative forward evaluations for this sequence (CFG counts 2 per step).
    elapsed: seconds since the run started (wall clock, cumulative).
    answer_end: first position >= prompt_length holding a committed end-of-text token, else length;
        tokens from there on are not part of the answer (``answer_end``).
    topk_ids / topk_probs ((length, TOPK), only with ``record_topk``): the most likely tokens and
        their ``prob``-style probabilities in the active block; -1 / NaN elsewhere. Else None.
    edited (int64, sorted) / edited_from (int64, same order): token editing (LLaDA 2.1): written
        positions whose token this step replaced by another, and the token each held before (the new
        one is in ``tokens``). Distinct from ``remasked``: an edit goes from a token straight to a
        token, a re-mask from a token back to [MASK] (or, in a uniform-state run, back to noise).

    Uniform-state runs (DiffusionGemma: no [MASK] token, a canvas of noise is refined) use the same
    fields: ``masked`` means *not accepted yet*, and such a position holds its current draft token in
    ``tokens`` (not the run's ``mask_id``), so ``masked & (tokens != mask_id)`` marks the drafts.
    """

    step: int
    block: int
    tokens: np.ndarray
    masked: np.ndarray
    fixed: np.ndarray
    prompt_length: int
    committed: np.ndarray
    remasked: np.ndarray
    confidence: np.ndarray
    prob: np.ndarray
    proposal: np.ndarray
    nfe: int
    elapsed: float
    answer_end: int
    topk_ids: np.ndarray | None = None
    topk_probs: np.ndarray | None = None
    edited: np.ndarray = dataclass_field(default_factory=lambda: _NO_POSITIONS)
    edited_from: np.ndarray = dataclass_field(default_factory=lambda: _NO_POSITIONS)

    def __post_init__(self) -> None:
        for field in fields(self):
            value = getattr(self, field.name)
            if isinstance(value, np.ndarray):
                value.flags.writeable = False

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, StepState):
            return NotImplemented
        for field in fields(self):
            a, b = getattr(self, field.name), getattr(other, field.name)
            if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
                if a is None or b is None or a.shape != b.shape or a.dtype.kind != b.dtype.kind:
                    return False
                if not np.array_equal(a, b, equal_nan=a.dtype.kind == "f"):
                    return False
            elif a != b:
                return False
        return True

    __hash__ = None  # type: ignore[assignment]

    @property
    def length(self) -> int:
        return int(self.tokens.shape[0])

    @property
    def done(self) -> bool:
        return not bool(self.masked.any())

    @property
    def slots(self) -> np.ndarray:
        return np.flatnonzero(~self.fixed)

    def answer_ids(self) -> list[int]:
        """Ids of the appended region up to (excluding) the first end-of-text."""
        return [int(i) for i in self.tokens[self.prompt_length : self.answer_end]]

    def text_ids(self) -> list[int]:
        """Ids of the whole canvas up to the answer's end: prompt, infilled slots and answer."""
        return [int(i) for i in self.tokens[: self.answer_end]]


@dataclass(frozen=True)
class RunInfo:
    """What a run is of. ``config``: ``SamplerConfig.to_dict()``; ``eos_ids``: the model's end-of-text ids."""

    model: str
    model_kind: str  # "diffusion" or "autoregressive"
    prompt: str
    config: dict[str, Any]
    mask_id: int
    eos_ids: tuple[int, ...]
    # "mask" (masked diffusion, autoregressive) or "uniform" (uniform-state diffusion such as
    # DiffusionGemma: positions not accepted yet show draft tokens, see ``StepState``).
    noise: str = dataclass_field(default="mask", kw_only=True)
    # A model that runs its own sampler (DiffusionGemma, LLaDA 2.x): the most model steps it spends on
    # one block (canvas); a block finished in fewer stopped early (``early_stop``). None: our sampler.
    steps_per_block: int | None = dataclass_field(default=None, kw_only=True)

    @staticmethod
    def describe(model: Any, prompt: str, config: Any) -> dict[str, Any]:
        """The ``RunInfo`` fields for ``model`` (a ``ModelAdapter``), ``prompt`` and ``config`` (a
        ``SamplerConfig`` or its dict), as keyword arguments for ``RunInfo`` or any subclass."""
        plan = getattr(model, "steps_per_block", None)
        settings = config.to_dict() if hasattr(config, "to_dict") else dict(config)
        # A model's own noise (DiffusionGemma), or the run's (``SamplerConfig.noise``, our sampler).
        noise = str(getattr(model, "noise", "mask"))
        return {
            "model": str(model.name),
            "model_kind": str(model.kind),
            "prompt": prompt,
            "config": settings,
            "mask_id": int(model.mask_id),
            "eos_ids": tuple(int(i) for i in model.eos_ids),
            "noise": "uniform" if settings.get("noise") == "uniform" else noise,
            "steps_per_block": int(plan(config)) if plan is not None and hasattr(config, "to_dict") else None,
        }

    def info(self) -> dict[str, Any]:
        """This run's ``RunInfo`` fields as keyword arguments (to build another subclass from it)."""
        return {field.name: getattr(self, field.name) for field in fields(RunInfo)}


class EarlyStop(NamedTuple):
    """How much a run's early stopping saved, over the blocks (canvases) it finished.

    ``block_steps``: model steps (states whose NFE grew) per block that ran, in block order;
    ``finished``: how many of those blocks finished (all but a block cut short by Stop);
    ``planned``: ``steps_per_block`` x finished blocks; ``saved``: the steps those blocks did not
    need (a block that took more than planned, e.g. LLaDA 2.1's edit-only steps, saves none)."""

    steps_per_block: int
    block_steps: tuple[int, ...]
    finished: int
    planned: int
    saved: int

    def text(self, unit: str = "block") -> str:
        if not self.finished:
            return f"no {unit} finished yet"
        if not self.saved:
            return f"none: every {unit} used all {self.steps_per_block} steps"
        early = sum(1 for taken in self.block_steps[: self.finished] if taken < self.steps_per_block)
        units = unit + ("es" if unit.endswith("s") else "s") if self.finished != 1 else unit
        return f"stopped early: {self.saved} of {self.planned} steps saved ({early} of {self.finished} {units})"


def early_stop(states: Sequence[Any], steps_per_block: int | None) -> EarlyStop | None:
    """The ``EarlyStop`` of ``states`` (a run's states in order) given its ``steps_per_block``; None
    without one (our own sampler plans its steps in total, not per block)."""
    if not steps_per_block or not states:
        return None
    counts: dict[int, int] = {}
    for before, state in zip(states, states[1:], strict=False):
        counts.setdefault(int(state.block), 0)
        counts[int(state.block)] += int(state.nfe > before.nfe)
    blocks = tuple(counts[block] for block in sorted(counts))
    final = states[-1]
    finished = len(blocks) if not final.masked.any() else max(len(blocks) - 1, 0)
    saved = sum(max(steps_per_block - taken, 0) for taken in blocks[:finished])
    return EarlyStop(int(steps_per_block), blocks, finished, steps_per_block * finished, saved)


def answer_end(tokens: np.ndarray, masked: np.ndarray, prompt_length: int, eos_ids: Sequence[int] | np.ndarray) -> int:
    """The first position >= ``prompt_length`` holding a committed end-of-text token, else the length."""
    ends = np.isin(tokens[prompt_length:], np.asarray(eos_ids, dtype=np.int64)) & ~masked[prompt_length:]
    hits = np.flatnonzero(ends)
    return int(prompt_length + hits[0]) if hits.size else int(tokens.shape[0])


class Blank(NamedTuple):
    """The "nothing read here" arrays for a canvas of one length: NaN readings, -1 proposals and
    top-k ids. Read-only, so states whose step looked at no position share them."""

    nan: np.ndarray
    no_proposal: np.ndarray
    topk_ids: np.ndarray | None
    topk_probs: np.ndarray | None

    @classmethod
    def of(cls, length: int, record_topk: bool) -> Blank:
        arrays = cls(
            np.full(length, np.nan),
            np.full(length, -1, dtype=np.int64),
            np.full((length, TOPK), -1, dtype=np.int64) if record_topk else None,
            np.full((length, TOPK), np.nan) if record_topk else None,
        )
        for array in arrays:
            if array is not None:
                array.flags.writeable = False
        return arrays


def spread(blank: np.ndarray | None, positions: np.ndarray, values: np.ndarray | None) -> np.ndarray | None:
    """``blank`` with ``values`` written at ``positions`` (top-k rows may be narrower than TOPK);
    ``blank`` itself when there is nothing to write."""
    if blank is None or values is None or len(positions) == 0:
        return blank
    result = blank.copy()
    if result.ndim == 2:
        result[positions, : values.shape[-1]] = values
    else:
        result[positions] = values
    return result


def step_state(
    *,
    step: int,
    block: int,
    tokens: np.ndarray,
    masked: np.ndarray,
    fixed: np.ndarray,
    prompt_length: int,
    eos_ids: Sequence[int] | np.ndarray,
    blank: Blank,
    committed: np.ndarray | Sequence[int] = (),
    remasked: np.ndarray | Sequence[int] = (),
    nfe: int = 0,
    elapsed: float = 0.0,
    window: np.ndarray | Sequence[int] = (),
    scored: np.ndarray | None = None,
    confidence: np.ndarray | None = None,
    prob: np.ndarray | None = None,
    proposal: np.ndarray | None = None,
    topk_ids: np.ndarray | None = None,
    topk_probs: np.ndarray | None = None,
    edited: np.ndarray | Sequence[int] = (),
    edited_from: np.ndarray | Sequence[int] = (),
) -> StepState:
    """Build a ``StepState`` from a step's readings at its ``window`` positions.

    ``prob``, ``topk_ids`` and ``topk_probs`` are given per window position; ``confidence`` and
    ``proposal`` too, but only the window positions in ``scored`` (the slots that were masked when
    the step began; default: all of them) keep theirs. Every other position reads NaN / -1 (the
    shared ``blank`` arrays when the window is empty). ``answer_end`` is derived here, once.
    ``edited`` / ``edited_from``: positions a token edit rewrote and the tokens they held before (any
    order; stored sorted by position).
    """
    window = np.asarray(window, dtype=np.int64)
    edited = np.asarray(edited, dtype=np.int64).reshape(-1)
    edited_from = np.asarray(edited_from, dtype=np.int64).reshape(-1)
    if edited.shape != edited_from.shape:
        raise ValueError(f"edited has {edited.size} positions but edited_from {edited_from.size} tokens")
    order = np.argsort(edited, kind="stable")
    scored_positions = window if scored is None else window[scored]

    def at_scored(values: np.ndarray | None) -> np.ndarray | None:
        return values if values is None or scored is None else values[scored]

    return StepState(
        step=step,
        block=block,
        tokens=tokens,
        masked=masked,
        fixed=fixed,
        prompt_length=prompt_length,
        committed=np.sort(np.asarray(committed, dtype=np.int64)),
        remasked=np.sort(np.asarray(remasked, dtype=np.int64)),
        confidence=spread(blank.nan, scored_positions, at_scored(confidence)),
        prob=spread(blank.nan, window, prob),
        proposal=spread(blank.no_proposal, scored_positions, at_scored(proposal)),
        nfe=nfe,
        elapsed=elapsed,
        answer_end=answer_end(tokens, masked, prompt_length, eos_ids),
        topk_ids=spread(blank.topk_ids, window, topk_ids),
        topk_probs=spread(blank.topk_probs, window, topk_probs),
        edited=edited[order] if edited.size else _NO_POSITIONS,
        edited_from=edited_from[order] if edited.size else _NO_POSITIONS,
    )
