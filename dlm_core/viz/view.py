"""``RunView``: the display-side record of one run, live or replayed, and what a frame shows.

A ``RunView`` holds the ``StepState`` list of a run (fed one state at a time while the model runs,
or all at once from a ``Trajectory``), a ``token_text(id)`` function and the run's metadata. It
keeps a few running arrays up to date as states arrive (last commit step and confidence per
position, the heatmap matrix, the commit / re-mask markers), so rendering the newest step costs
O(positions) and never rescans the history; an older step (scrubbing) is rebuilt by replaying the
commit lists up to it, O(steps) small numpy operations.

"Confidence" in the display layer is the model's probability of a token (``StepState.prob``): of
its proposal while a position is masked, of the committed token afterwards. It is in [0, 1] for
every strategy (a strategy's own score, e.g. ``entropy``'s negative entropy, is not), and for the
default ``low_confidence`` strategy it is exactly the score that decides what gets committed. The
strategy's score is shown separately in the inspector.

Thread safety: one thread may ``add`` states while others render (the app's model worker and its
event handler); ``lock`` guards the running arrays, and ``frame`` copies them while holding it.

Nothing here imports torch, gradio, ``dlm_core.sampler`` or ``dlm_core.trajectory``: states only need
the ``StepState`` attributes, and a trajectory is read as what it is, a ``RunInfo`` (``state``) with
``states``, ``vocab`` and ``final_text``; ``RunMeta`` is that ``RunInfo`` plus what the display adds.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from ..state import RunInfo, early_stop


@dataclass(frozen=True)
class RunMeta(RunInfo):
    """What the display needs to know about a run besides its states: its ``RunInfo`` and these."""

    expected_steps: int  # the step budget: the heatmap's fixed height; adaptive strategies may use fewer
    label: str = ""  # e.g. "replay of an uploaded file"


@dataclass
class Frame:
    """Everything one canvas frame shows (step ``step``; highlights cover steps ``since + 1 .. step``)."""

    step: int
    since: int
    tokens: np.ndarray
    masked: np.ndarray
    fixed: np.ndarray
    answer_end: int
    commit_step: np.ndarray  # last commit step <= step per position (-1: none)
    commit_prob: np.ndarray  # float32 model probability at that commit (NaN: none)
    remask_count: np.ndarray  # how often each position was re-masked up to this step
    first_lost: np.ndarray  # the token a position lost at its first re-mask (-1: never re-masked)
    new: np.ndarray  # bool: committed in (since, step] and still committed
    remasked: np.ndarray  # bool: re-masked in (since, step] and still masked
    previous: dict[int, int] = field(default_factory=dict)  # re-masked position -> the token it lost
    # token edits (LLaDA 2.1) in (since, step]: position -> the token it held before its first edit there
    edited: dict[int, int] = field(default_factory=dict)
    uniform: bool = False  # a uniform-state run: masked positions show draft tokens (see ``StepState``)
    mask_id: int = -1
    topk_ids: np.ndarray | None = None
    topk_probs: np.ndarray | None = None
    prob: np.ndarray | None = None
    confidence: np.ndarray | None = None
    proposal: np.ndarray | None = None  # the model's guess at slots masked when the step began (-1 elsewhere)
    block: int = 0
    nfe: int = 0
    elapsed: float = 0.0

    @property
    def revised(self) -> np.ndarray:
        """bool per position: written now, re-masked before, and now a different token from the one it
        first lost (re-masked and written back the same is no revision)."""
        return ~self.masked & (self.first_lost >= 0) & (self.tokens != self.first_lost)


class RunView:
    """A run as the UI sees it. Append states with ``add``; read frames with ``frame``."""

    def __init__(self, meta: RunMeta, token_text: Callable[[int], str], states: Sequence[Any] = ()):
        self.meta = meta
        self._token_text = token_text
        self._text_cache: dict[int, str] = {}
        self.states: list[Any] = []
        self.status = "running"  # running | paused | stopped | done | replay
        self.final_text: str | None = None
        self.lock = threading.RLock()
        self._model_seconds: list[float] = []
        for state in states:
            self.add(state)

    # -- construction ---------------------------------------------------------------------------

    @classmethod
    def for_model(
        cls, model: Any, prompt: str, config: Any, label: str = "", token_text: Callable[[int], str] | None = None
    ) -> RunView:
        """An empty view for a run about to start (``config``: a SamplerConfig or its dict;
        ``token_text`` defaults to ``model.token_text``)."""
        # expected_steps is set from the first state (it needs the slot count)
        meta = RunMeta(**RunInfo.describe(model, prompt, config), expected_steps=0, label=label)
        return cls(meta, token_text or model.token_text)

    @classmethod
    def from_trajectory(cls, trajectory: Any, label: str = "") -> RunView:
        """A complete (or stopped) recorded run; token texts come from the trajectory's vocab."""
        vocab = trajectory.vocab
        meta = RunMeta(**trajectory.info(), expected_steps=0, label=label)
        view = cls(meta, lambda token_id: vocab.get(int(token_id), f"<{int(token_id)}>"), trajectory.states)
        view.final_text = trajectory.final_text
        view.status = "done" if trajectory.final.done else "stopped"
        return view

    # -- streaming ------------------------------------------------------------------------------

    def add(self, state: Any, model_seconds: float | None = None) -> None:
        """Append the next state (steps must arrive in order) and update the running arrays.
        ``model_seconds``: the model's own time up to this state (cumulative), where the caller
        measured it apart from pauses (Step mode); else the state's wall-clock ``elapsed`` counts."""
        with self.lock:
            if state.step != len(self.states):
                raise ValueError(f"expected step {len(self.states)}, got step {state.step}")
            if not self.states:
                self._start(state)
            else:
                self._advance(state)
            self.states.append(state)
            self._model_seconds.append(float(state.elapsed) if model_seconds is None else float(model_seconds))

    def _start(self, state: Any) -> None:
        n = int(state.tokens.shape[0])
        self.length = n
        slots = np.flatnonzero(~state.fixed)
        # The heatmap's columns: first to last generation slot (prompt text around an infill is not shown).
        self.x0 = int(slots[0]) if slots.size else 0
        self.x1 = int(slots[-1]) if slots.size else n - 1
        self.width = self.x1 - self.x0 + 1
        self.num_slots = int(slots.size)
        steps = self.meta.config.get("steps")
        budget = int(steps) if steps else self.num_slots
        if not self.meta.expected_steps:
            self.meta = replace(self.meta, expected_steps=max(1, budget))
        self._commit_step, self._commit_prob, self._remask_count, self._first_lost = self._fresh_arrays()
        rows = max(self.meta.expected_steps, 1) + 1
        self._heat = np.full((rows, self.width), np.nan, dtype=np.float32)
        # What the heatmap shows per step and position (``cells``): MASKED_CELL while masked, the
        # model's latest probability of the written token once written, NaN for prompt columns.
        self._cells = np.full((rows, self.width), np.nan, dtype=np.float32)
        self._slot_columns = ~np.asarray(state.fixed, dtype=bool)[self.x0 : self.x1 + 1]
        self._cells[0] = _cell_row(state, self.x0, self.x1, self._slot_columns, None)
        self._commits: list[tuple[int, int, float]] = []  # (step, position, prob)
        self._remasks: list[tuple[int, int, int]] = []  # (step, position, lost token id)
        self._heat[0] = np.nan

    def _advance(self, state: Any) -> None:
        step = int(state.step)
        previous = self.states[-1]
        committed = np.asarray(state.committed, dtype=np.int64)
        remasked = np.asarray(state.remasked, dtype=np.int64)
        probs = np.asarray(state.prob, dtype=np.float64)
        for position in remasked.tolist():
            self._remasks.append((step, position, int(previous.tokens[position])))
        _apply(state, previous, self._commit_step, self._commit_prob, self._remask_count, self._first_lost)
        for position, p in zip(committed.tolist(), probs[committed].tolist(), strict=True):
            self._commits.append((step, position, p))
        if step >= self._heat.shape[0]:
            rows = max(step + 1, 2 * self._heat.shape[0])
            self._heat = _grown(self._heat, rows)
            self._cells = _grown(self._cells, rows)
        self._heat[step] = probs[self.x0 : self.x1 + 1]
        self._cells[step] = _cell_row(state, self.x0, self.x1, self._slot_columns, self._cells[step - 1])

    # -- summary --------------------------------------------------------------------------------

    @property
    def last_step(self) -> int:
        return len(self.states) - 1

    @property
    def final(self) -> Any:
        return self.states[-1]

    @property
    def complete(self) -> bool:
        return bool(self.states) and not bool(self.states[-1].masked.any())

    def token_text(self, token_id: int) -> str:
        token_id = int(token_id)
        text = self._text_cache.get(token_id)
        if text is None:
            text = str(self._token_text(token_id))
            self._text_cache[token_id] = text
        return text

    def heat(self, upto: int | None = None) -> np.ndarray:
        """(steps + 1) x width float32 matrix of probabilities (rows 0..upto; NaN = not scored)."""
        with self.lock:
            last = self.last_step if upto is None else min(upto, self.last_step)
            return self._heat[: last + 1]

    def cells(self, upto: int | None = None) -> np.ndarray:
        """(steps + 1) x width float32 matrix of what the heatmap shows (rows 0..upto): ``MASKED_CELL``
        where the position was masked after that step, the model's latest probability of the written
        token where it was written (the step's reading where the step scored it, else carried from the
        last step that did), NaN in prompt columns (an infill's given text between the blanks)."""
        with self.lock:
            last = self.last_step if upto is None else min(upto, self.last_step)
            return self._cells[: last + 1]

    def commits(self, upto: int | None = None) -> list[tuple[int, int, float]]:
        with self.lock:
            last = self.last_step if upto is None else upto
            return [c for c in self._commits if c[0] <= last]

    def remasks(self, upto: int | None = None) -> list[tuple[int, int, int]]:
        with self.lock:
            last = self.last_step if upto is None else upto
            return [r for r in self._remasks if r[0] <= last]

    def stats(self, upto: int | None = None) -> dict[str, Any]:
        """Steps, NFE, tokens per forward, model time (without pauses) and wall time, tokens per second
        of model time, re-masks (at step ``upto``)."""
        with self.lock:
            state = self.states[self.last_step if upto is None else upto]
            remasked = sum(1 for r in self._remasks if r[0] <= state.step)
            model_seconds = self._model_seconds[state.step]
        generated = int((~state.fixed & ~state.masked).sum())
        elapsed = float(state.elapsed)
        return {
            "model_seconds": model_seconds,
            "paused_seconds": max(0.0, elapsed - model_seconds),
            "steps": int(state.step),
            "nfe": int(state.nfe),
            "slots": self.num_slots,
            "generated": generated,
            "tokens_per_forward": generated / state.nfe if state.nfe else math.nan,
            "elapsed": elapsed,
            "tokens_per_second": generated / model_seconds if model_seconds > 0 else math.nan,
            "remasked": remasked,
            "complete": not bool(state.masked.any()),
            # a model with its own sampler: what early stopping saved up to this step (None: ours)
            "early_stop": early_stop(self.states[: state.step + 1], self.meta.steps_per_block),
        }

    # -- frames ---------------------------------------------------------------------------------

    def clamp(self, step: Any) -> int:
        try:
            value = int(step)
        except (TypeError, ValueError):
            value = self.last_step
        return max(0, min(value, self.last_step))

    def frame(self, step: int | None = None, since: int | None = None) -> Frame:
        """The frame at ``step`` (default: newest). Highlights cover the steps after ``since``
        (default ``step - 1``, i.e. this step's commits and re-masks only)."""
        with self.lock:
            step = self.last_step if step is None else self.clamp(step)
            if step == self.last_step:
                arrays = (
                    self._commit_step.copy(),
                    self._commit_prob.copy(),
                    self._remask_count.copy(),
                    self._first_lost.copy(),
                )
            else:
                arrays = None
        if arrays is None:
            arrays = self._replay(step)
        return self._frame(step, since, *arrays)

    def iter_frames(self):
        """Frames 0, 1, ..., last in order, updated incrementally (O(positions) per step).

        The frames share running arrays: use each one before advancing the iterator."""
        arrays = self._fresh_arrays()
        for step in range(len(self.states)):
            if step:
                _apply(self.states[step], self.states[step - 1], *arrays)
            yield self._frame(step, None, *arrays)

    def _frame(self, step: int, since: int | None, commit_step, commit_prob, remask_count, first_lost) -> Frame:
        since = step - 1 if since is None else max(0, min(int(since), step - 1))
        state = self.states[step]
        masked = np.asarray(state.masked, dtype=bool)
        new = np.zeros(self.length, dtype=bool)
        remasked = np.zeros(self.length, dtype=bool)
        previous: dict[int, int] = {}
        edited: dict[int, int] = {}
        for k in range(since + 1, step + 1):
            s = self.states[k]
            for position, old in zip(getattr(s, "edited", ()), getattr(s, "edited_from", ()), strict=True):
                edited.setdefault(int(position), int(old))
            if len(s.committed):
                new[np.asarray(s.committed)] = True
            if len(s.remasked):
                remasked[np.asarray(s.remasked)] = True
                for position in np.asarray(s.remasked).tolist():
                    previous[position] = int(self.states[k - 1].tokens[position])
        new &= ~masked
        remasked &= masked
        return Frame(
            step=step,
            since=since,
            tokens=np.asarray(state.tokens),
            masked=masked,
            fixed=np.asarray(state.fixed, dtype=bool),
            answer_end=int(state.answer_end),
            commit_step=commit_step,
            commit_prob=commit_prob,
            remask_count=remask_count,
            first_lost=first_lost,
            new=new,
            remasked=remasked,
            previous={p: t for p, t in previous.items() if remasked[p]},
            edited={p: t for p, t in edited.items() if not masked[p] and int(state.tokens[p]) != t},
            uniform=getattr(self.meta, "noise", "mask") == "uniform",
            mask_id=int(self.meta.mask_id),
            topk_ids=state.topk_ids,
            topk_probs=state.topk_probs,
            prob=np.asarray(state.prob),
            confidence=np.asarray(state.confidence),
            proposal=np.asarray(state.proposal),
            block=int(state.block),
            nfe=int(state.nfe),
            elapsed=float(state.elapsed),
        )

    def _fresh_arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        return (
            np.full(self.length, -1, dtype=np.int32),
            np.full(self.length, np.nan, dtype=np.float32),
            np.zeros(self.length, dtype=np.int32),
            np.full(self.length, -1, dtype=np.int64),
        )

    def _replay(self, step: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        arrays = self._fresh_arrays()
        for k in range(1, step + 1):
            _apply(self.states[k], self.states[k - 1], *arrays)
        return arrays


MASKED_CELL = -0.1  # the heatmap's value for a masked cell: below every probability, its own colour


def _grown(matrix: np.ndarray, rows: int) -> np.ndarray:
    grown = np.full((rows, matrix.shape[1]), np.nan, dtype=matrix.dtype)
    grown[: matrix.shape[0]] = matrix
    return grown


def _cell_row(state: Any, x0: int, x1: int, slots: np.ndarray, previous: np.ndarray | None) -> np.ndarray:
    """One row of ``RunView.cells``: masked slots MASKED_CELL, written ones the step's probability of
    their token where scored, else the previous row's value (NaN, no reading, for a token that was
    written without one)."""
    masked = np.asarray(state.masked, dtype=bool)[x0 : x1 + 1]
    prob = np.asarray(state.prob, dtype=np.float32)[x0 : x1 + 1]
    row = np.full(x1 - x0 + 1, np.nan, dtype=np.float32) if previous is None else previous.copy()
    written = slots & ~masked
    row[written & (row == MASKED_CELL)] = np.nan
    scored = written & ~np.isnan(prob)
    row[scored] = prob[scored]
    row[slots & masked] = MASKED_CELL
    row[~slots] = np.nan
    return row


def _apply(
    state: Any,
    previous: Any,
    commit_step: np.ndarray,
    commit_prob: np.ndarray,
    remask_count: np.ndarray,
    first_lost: np.ndarray,
) -> None:
    """Update the running per-position arrays with one step's re-masks and commits (``previous``: the
    state before it, whose tokens the re-masked positions lost)."""
    remasked = np.asarray(state.remasked, dtype=np.int64)
    committed = np.asarray(state.committed, dtype=np.int64)
    remask_count[remasked] += 1
    first = remasked[first_lost[remasked] < 0]
    first_lost[first] = np.asarray(previous.tokens)[first]
    commit_step[remasked] = -1
    commit_prob[remasked] = np.nan
    commit_step[committed] = state.step
    commit_prob[committed] = np.asarray(state.prob)[committed]
    edited = np.asarray(getattr(state, "edited", ()), dtype=np.int64)
    commit_step[edited] = state.step  # rewritten by a token edit at this step

