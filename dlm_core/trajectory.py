"""A recorded denoising run: every ``StepState``, a summary, and a compact versioned JSON form.

``record(model, prompt, config)`` runs ``denoise`` and returns a ``Trajectory``; the app streams
instead, feeding each state to ``TrajectoryBuilder.add`` and calling ``build()`` at the end (or at
any point: an unfinished run is a valid trajectory whose ``complete`` is False).

Floats (confidence, prob, top-k probabilities, elapsed seconds) are rounded to 4 decimals when a
state is added, so a trajectory equals its JSON round trip exactly (``==`` compares every field).

JSON schema ``diffusion-canvas/trajectory/1`` (one object; every key required unless marked)::

    schema_version  "diffusion-canvas/trajectory/1"
    model           {"name": str, "kind": "diffusion"|"autoregressive", "mask_id": int, "eos_ids": [int]}
    prompt          str, the prompt as typed
    config          SamplerConfig fields (validated as a SamplerConfig)
    prompt_length   int, positions before the appended region
    initial_tokens  [int] * length: the canvas before step 1 (mask_id at slots; a uniform-state run
                    may start its slots from other tokens: our sampler's random canvas)
    slots           [int], sorted: generation positions; every other position is fixed
    vocab           {"ids": [int] sorted unique, "texts": [str]}: the text of every id used anywhere,
                    so replay needs neither model nor tokenizer
    final_text      str: decoded canvas up to the answer's end (prompt, infills, answer)
    answer_text     str: decoded appended region up to the first end-of-text
    steps           one object per model step (the initial state is implied by initial_tokens):
        block, nfe       int
        elapsed          float seconds since the start
        committed        [int] positions unmasked; committed_ids [int] their tokens (same length)
        remasked         [int] positions re-masked (ReMDM)
        window           [int] sorted positions the step scored (its active block)
        confidence, prob [float|null] per window position (null = NaN)
        proposal         [int] per window position (-1 = none)
        topk_ids, topk_probs  [[int]*5] / [[float|null]*5] per window position, only when
                              config.record_topk is true
        edited, edited_ids   (optional, only when the step edited) [int] written positions whose
                             token was replaced (token editing), and their new tokens
        drafted, drafted_ids (optional, uniform-state runs) [int] positions not accepted yet whose
                             draft token changed, and the new drafts
    noise           (optional) "mask" (default) or "uniform": a uniform-state run (DiffusionGemma),
                    where a position not accepted yet shows a draft token instead of [MASK]
    source          (optional) {str: str|int|float|bool|null}: what recorded the run when it was not
                    our sampler (``dlm_core.bridge``), e.g. the pipeline and its settings
    steps_per_block (optional) int: a model with its own sampler plans at most this many model steps
                    per block (canvas); ``early_stop`` counts what its finished blocks saved

Tokens, masks and ``answer_end`` of every state are rebuilt by replaying commits, re-masks, edits
and drafts (in that order), and the replay is checked: a commit must hit a masked slot, a re-mask a
committed slot, an edit a written slot (with a different token), a draft a slot still masked. ``from_json``
never evaluates or unpickles anything; it parses JSON (NaN/Infinity and duplicate keys rejected)
and raises ``TrajectoryError(field, message)`` on any deviation: wrong version, unknown or missing
keys, wrong types, wrong shapes, or sizes beyond the limits: at most 4096 positions, 2048 steps,
65536 vocabulary entries, 256 MiB of JSON (``MAX_*`` below; they cover every run the sampler's
settings allow, and ``to_json`` refuses to write a document over the size limit). Arrays that do
not change between steps are shared (read-only), so memory follows the document's content.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from . import sampler
from .sampler import ConfigError, EncodedPrompt, SamplerConfig, prompt_text
from .state import MASK_GLYPH, TOPK, Blank, EarlyStop, RunInfo, StepState, early_stop, step_state

SCHEMA_VERSION = "diffusion-canvas/trajectory/1"
MAX_POSITIONS = 4096  # canvas length
MAX_STEPS = 2048  # model steps (states - 1)
MAX_JSON_CHARS = 256 * 1024 * 1024
MAX_VOCAB = 65536
MAX_TOKEN_ID = 2**31 - 1
MAX_TEXT_CHARS = 1_000_000
MAX_TOKEN_TEXT_CHARS = 1024
DECIMALS = 4


class TrajectoryError(ValueError):
    """A trajectory (usually a JSON file) is malformed. ``field`` names the offending key path."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def _round(values: np.ndarray | None) -> np.ndarray | None:
    return None if values is None else np.round(values.astype(np.float64), DECIMALS)


@dataclass(frozen=True, eq=False)
class Trajectory(RunInfo):
    """One run: its ``RunInfo`` (model, prompt, settings) and its states. ``states[0]`` is the
    initial canvas, ``states[k]`` the canvas after model step k."""

    states: list[StepState]
    vocab: dict[int, str]
    final_text: str
    answer_text: str
    schema_version: str = field(default=SCHEMA_VERSION)
    source: dict[str, Any] | None = field(default=None, kw_only=True)  # set by dlm_core.bridge recordings

    # -- summary ------------------------------------------------------------------------------------

    @property
    def final(self) -> StepState:
        return self.states[-1]

    @property
    def length(self) -> int:
        return self.final.length

    @property
    def num_steps(self) -> int:
        return len(self.states) - 1

    @property
    def nfe(self) -> int:
        return self.final.nfe

    @property
    def elapsed(self) -> float:
        return self.final.elapsed

    @property
    def complete(self) -> bool:
        return self.final.done

    @property
    def num_generated(self) -> int:
        return int((~self.final.fixed).sum())

    @property
    def tokens_per_forward(self) -> float:
        return self.num_generated / self.nfe if self.nfe else math.nan

    @property
    def early_stop(self) -> EarlyStop | None:
        """What early stopping saved (models with their own sampler: ``steps_per_block``), else None."""
        return early_stop(self.states, self.steps_per_block)

    @property
    def sampler_config(self) -> SamplerConfig:
        return SamplerConfig.from_dict(self.config)

    def stats(self) -> dict[str, Any]:
        return {
            "steps": self.num_steps,
            "nfe": self.nfe,
            "generated": self.num_generated,
            "tokens_per_forward": self.tokens_per_forward,
            "elapsed": self.elapsed,
            "remasked": int(sum(len(state.remasked) for state in self.states)),
            "edited": int(sum(len(state.edited) for state in self.states)),
            "complete": self.complete,
            "steps_saved": None if self.early_stop is None else self.early_stop.saved,
        }

    # -- equality and JSON ----------------------------------------------------------------------------

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Trajectory):
            return NotImplemented
        scalars = ("model", "model_kind", "mask_id", "eos_ids", "prompt", "config", "vocab", "final_text", "noise", "source",
                   "steps_per_block")
        if any(getattr(self, name) != getattr(other, name) for name in scalars + ("answer_text", "schema_version")):
            return False
        return len(self.states) == len(other.states) and all(
            a == b for a, b in zip(self.states, other.states, strict=True)
        )

    __hash__ = None  # type: ignore[assignment]

    def to_dict(self) -> dict[str, Any]:
        initial = self.states[0]
        record_topk = self.config.get("record_topk", False)
        steps = [
            _step_to_dict(state, record_topk, before, self.mask_id)
            for before, state in zip(self.states, self.states[1:], strict=False)
        ]
        ids = sorted(self.vocab)
        extra: dict[str, Any] = {}
        if self.noise != "mask":
            extra["noise"] = self.noise
        if self.source is not None:
            extra["source"] = dict(self.source)
        if self.steps_per_block is not None:
            extra["steps_per_block"] = int(self.steps_per_block)
        return {
            **extra,
            "schema_version": SCHEMA_VERSION,
            "model": {
                "name": self.model,
                "kind": self.model_kind,
                "mask_id": self.mask_id,
                "eos_ids": list(self.eos_ids),
            },
            "prompt": self.prompt,
            "config": dict(self.config),
            "prompt_length": initial.prompt_length,
            "initial_tokens": initial.tokens.tolist(),
            "slots": np.flatnonzero(~initial.fixed).tolist(),
            "vocab": {"ids": ids, "texts": [self.vocab[i] for i in ids]},
            "final_text": self.final_text,
            "answer_text": self.answer_text,
            "steps": steps,
        }

    def to_json(self) -> str:
        """Compact JSON; raises ``TrajectoryError`` rather than produce a document ``from_json`` refuses."""
        text = json.dumps(self.to_dict(), ensure_ascii=False, separators=(",", ":"), allow_nan=False)
        if len(text) > MAX_JSON_CHARS:
            raise TrajectoryError(
                "json", f"trajectory is {len(text)} characters, over the {MAX_JSON_CHARS} limit (try record_topk=False)"
            )
        return text

    def save(self, path: str | Path) -> None:
        Path(path).write_text(self.to_json(), encoding="utf-8")

    @classmethod
    def from_json(cls, text: str | bytes) -> Trajectory:
        """Parse and strictly validate a JSON trajectory (see the module docstring)."""
        if isinstance(text, bytes):
            if len(text) > MAX_JSON_CHARS:
                raise TrajectoryError("json", f"document is {len(text)} bytes; the limit is {MAX_JSON_CHARS}")
            try:
                text = text.decode("utf-8")
            except UnicodeDecodeError as error:
                raise TrajectoryError("json", f"not UTF-8: {error}") from None
        if not isinstance(text, str):
            raise TrajectoryError("json", f"expected a JSON string, got {type(text).__name__}")
        if len(text) > MAX_JSON_CHARS:
            raise TrajectoryError("json", f"document is {len(text)} characters; the limit is {MAX_JSON_CHARS}")
        try:
            data = json.loads(text, parse_constant=_reject_constant, object_pairs_hook=_unique_keys)
        except TrajectoryError:
            raise
        except (ValueError, RecursionError) as error:
            raise TrajectoryError("json", f"not valid JSON: {error}") from None
        return cls.from_dict(data)

    @classmethod
    def load(cls, path: str | Path) -> Trajectory:
        path = Path(path)
        try:
            size = path.stat().st_size
        except OSError as error:
            raise TrajectoryError("file", f"cannot read {str(path)!r}: {error.strerror or error}") from None
        if size > MAX_JSON_CHARS * 4:
            raise TrajectoryError("json", f"file is {size} bytes; the limit is {MAX_JSON_CHARS} characters")
        return cls.from_json(path.read_bytes())

    @classmethod
    def from_dict(cls, data: Any) -> Trajectory:
        return _Reader(data).trajectory()


# -- building ---------------------------------------------------------------------------------------


class TrajectoryBuilder:
    """Collects states as they stream out of ``denoise``; ``build()`` returns the ``Trajectory``.

    ``add`` checks that steps arrive in order, rounds floats to 4 decimals and returns the stored
    (rounded) state; repeats of a finished final state (``denoise_batch`` repeats finished rows) are
    ignored. The model is used only for token texts and the final decoded text.
    """

    def __init__(self, model, prompt: str | EncodedPrompt, config: SamplerConfig):
        self.model = model
        self.prompt = prompt_text(prompt)
        self.config = config
        self.states: list[StepState] = []
        self._ids: set[int] = set()

    def add(self, state: StepState) -> StepState:
        if self.states and state.step == self.states[-1].step and state.done:
            return self.states[-1]  # a finished row repeated by denoise_batch: nothing new
        if state.step != len(self.states):
            raise TrajectoryError("steps", f"expected step {len(self.states)}, got step {state.step}")
        if state.length > MAX_POSITIONS:
            raise TrajectoryError(
                "initial_tokens", f"canvas has {state.length} positions; the limit is {MAX_POSITIONS}"
            )
        if state.step > MAX_STEPS:
            raise TrajectoryError("steps", f"more than {MAX_STEPS} steps")
        rounded = replace(
            state,
            confidence=_round(state.confidence),
            prob=_round(state.prob),
            topk_probs=_round(state.topk_probs),
            elapsed=round(float(state.elapsed), DECIMALS),
        )
        for ids in (state.tokens, state.proposal, state.topk_ids):
            if ids is not None:
                self._ids.update(int(i) for i in np.unique(ids) if i >= 0)
        self.states.append(rounded)
        return rounded

    def extend(self, states: Iterable[StepState]) -> TrajectoryBuilder:
        for state in states:
            self.add(state)
        return self

    def build(self) -> Trajectory:
        if not self.states:
            raise TrajectoryError("steps", "no state was added")
        model, final = self.model, self.states[-1]
        vocab = {i: model.token_text(i) for i in sorted(self._ids)}
        return Trajectory(
            **RunInfo.describe(model, self.prompt, self.config),
            source=_source_of(model, self.config),
            states=list(self.states),
            vocab=vocab,
            final_text=readable_text(model, final.text_ids()),
            answer_text=readable_text(model, final.answer_ids()),
        )


def _source_of(model, config) -> dict[str, Any] | None:
    """What recorded a run that our sampler did not make (``model.describe_source(config)``), else None."""
    describe = getattr(model, "describe_source", None)
    return None if describe is None else dict(describe(config))


def readable_text(model, ids: list[int]) -> str:
    """``ids`` decoded, each position still masked (a stopped run) shown as ``MASK_GLYPH``, never as the
    tokenizer's raw mask token (``<|mask|>``); the text between masks is decoded piece by piece."""
    mask_id = int(model.mask_id)
    if mask_id not in ids:
        return model.decode(ids)
    pieces: list[str] = []
    run: list[int] = []
    for token_id in ids:
        if token_id == mask_id:
            if run:
                pieces.append(model.decode(run))
                run = []
            pieces.append(MASK_GLYPH)
        else:
            run.append(token_id)
    if run:
        pieces.append(model.decode(run))
    return "".join(pieces)


def record(model, prompt: str | EncodedPrompt, config: SamplerConfig | None = None) -> Trajectory:
    """Run ``denoise`` to the end and return the recorded ``Trajectory``."""
    config = SamplerConfig() if config is None else config
    # ``sampler.denoise`` loads the torch loop on first use: reading and writing trajectories needs no torch.
    return TrajectoryBuilder(model, prompt, config).extend(sampler.denoise(model, prompt, config)).build()


# -- serialisation helpers ------------------------------------------------------------------------


def _float_or_none(value: float) -> float | None:
    return None if math.isnan(value) else float(value)


def _step_to_dict(state: StepState, record_topk: bool, before: StepState, mask_id: int) -> dict[str, Any]:
    scored = ~np.isnan(state.prob) | ~np.isnan(state.confidence) | (state.proposal >= 0)
    if state.topk_ids is not None:
        scored |= state.topk_ids[:, 0] >= 0
    window = np.flatnonzero(scored)
    step = {
        "block": state.block,
        "nfe": state.nfe,
        "elapsed": state.elapsed,
        "committed": state.committed.tolist(),
        "committed_ids": state.tokens[state.committed].tolist(),
        "remasked": state.remasked.tolist(),
        "window": window.tolist(),
        "confidence": [_float_or_none(v) for v in state.confidence[window].tolist()],
        "prob": [_float_or_none(v) for v in state.prob[window].tolist()],
        "proposal": state.proposal[window].tolist(),
    }
    if record_topk:
        step["topk_ids"] = state.topk_ids[window].tolist()
        step["topk_probs"] = [[_float_or_none(v) for v in row] for row in state.topk_probs[window].tolist()]
    if len(state.edited):
        step["edited"] = state.edited.tolist()
        step["edited_ids"] = state.tokens[state.edited].tolist()
    # Whatever commits, re-masks and edits do not explain is a new draft (uniform-state runs only).
    replayed = _replay(before.tokens, state.committed, state.tokens[state.committed], state.remasked, mask_id)
    replayed[state.edited] = state.tokens[state.edited]
    drafted = np.flatnonzero(replayed != state.tokens)
    if drafted.size:
        step["drafted"] = drafted.tolist()
        step["drafted_ids"] = state.tokens[drafted].tolist()
    return step


def _replay(tokens: np.ndarray, committed: np.ndarray, committed_ids: np.ndarray, remasked: np.ndarray, mask_id: int):
    """A copy of ``tokens`` with a step's commits and re-masks applied."""
    result = tokens.copy()
    result[committed] = committed_ids
    result[remasked] = mask_id
    return result


def _reject_constant(name: str) -> None:
    raise TrajectoryError("json", f"{name} is not allowed (numbers must be finite)")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise TrajectoryError("json", f"duplicate key {key!r}")
        result[key] = value
    return result


_TOP_KEYS = {
    "schema_version",
    "model",
    "prompt",
    "config",
    "prompt_length",
    "initial_tokens",
    "slots",
    "vocab",
    "final_text",
    "answer_text",
    "steps",
}
_STEP_KEYS = {
    "block",
    "nfe",
    "elapsed",
    "committed",
    "committed_ids",
    "remasked",
    "window",
    "confidence",
    "prob",
    "proposal",
}
_TOPK_KEYS = {"topk_ids", "topk_probs"}
_OPTIONAL_STEP_KEYS = {"edited", "edited_ids", "drafted", "drafted_ids"}
_OPTIONAL_TOP_KEYS = {"noise", "source", "steps_per_block"}
NOISE_KINDS = ("mask", "uniform")
MAX_SOURCE_KEYS = 64


class _Reader:
    """Strict validation of a parsed JSON document, building the ``Trajectory``."""

    def __init__(self, data: Any):
        self.data = data

    # -- primitive checks --

    @staticmethod
    def object(value: Any, where: str, keys: set[str], optional: set[str] = frozenset()) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise TrajectoryError(where or "document", f"must be an object, got {type(value).__name__}")
        missing, unknown = sorted(keys - value.keys()), sorted(value.keys() - keys - optional)
        if missing:
            raise TrajectoryError(f"{where}.{missing[0]}" if where else missing[0], "is missing")
        if unknown:
            raise TrajectoryError(f"{where}.{unknown[0]}" if where else unknown[0], "is not a known key")
        return value

    @staticmethod
    def integer(value: Any, where: str, low: int, high: int) -> int:
        if type(value) is not int or not low <= value <= high:
            raise TrajectoryError(where, f"must be an integer in [{low}, {high}], got {value!r:.40}")
        return value

    @staticmethod
    def number(value: Any, where: str, low: float, high: float, nullable: bool = False) -> float:
        if value is None and nullable:
            return math.nan
        if type(value) not in (int, float) or not low <= value <= high:
            null = " or null" if nullable else ""
            raise TrajectoryError(where, f"must be a number in [{low:g}, {high:g}]{null}, got {value!r:.40}")
        return float(value)

    @staticmethod
    def text(value: Any, where: str, limit: int = MAX_TEXT_CHARS) -> str:
        if not isinstance(value, str) or len(value) > limit:
            raise TrajectoryError(where, f"must be a string of at most {limit} characters")
        return value

    @staticmethod
    def array(value: Any, where: str, length: int | None = None, limit: int = MAX_POSITIONS) -> list:
        if not isinstance(value, list):
            raise TrajectoryError(where, f"must be a list, got {type(value).__name__}")
        if length is not None and len(value) != length:
            raise TrajectoryError(where, f"must have {length} entries, got {len(value)}")
        if len(value) > limit:
            raise TrajectoryError(where, f"has {len(value)} entries; the limit is {limit}")
        return value

    def int_array(self, value: Any, where: str, low: int, high: int, length: int | None = None) -> np.ndarray:
        items = self.array(value, where, length)
        for index, item in enumerate(items):
            if type(item) is not int or not low <= item <= high:
                raise TrajectoryError(f"{where}[{index}]", f"must be an integer in [{low}, {high}], got {item!r:.40}")
        return np.asarray(items, dtype=np.int64).reshape(len(items))

    def float_array(self, value: Any, where: str, length: int, low: float, high: float) -> np.ndarray:
        items = self.array(value, where, length)
        return np.asarray(
            [self.number(item, f"{where}[{i}]", low, high, nullable=True) for i, item in enumerate(items)],
            dtype=np.float64,
        ).reshape(len(items))

    def positions(self, value: Any, where: str, length: int) -> np.ndarray:
        result = self.int_array(value, where, 0, length - 1)
        if result.size and not bool((np.diff(result) > 0).all()):
            raise TrajectoryError(where, "must be sorted and without repeats")
        return result

    # -- the document --

    def trajectory(self) -> Trajectory:
        data = self.object(self.data, "", _TOP_KEYS, _OPTIONAL_TOP_KEYS)
        noise = data.get("noise", "mask")
        if noise not in NOISE_KINDS:
            raise TrajectoryError("noise", f"must be one of {', '.join(NOISE_KINDS)}, got {str(noise)[:40]!r}")
        source = self.source(data.get("source"))
        steps_per_block = data.get("steps_per_block")
        if steps_per_block is not None:
            steps_per_block = self.integer(steps_per_block, "steps_per_block", 1, MAX_STEPS)
        if data["schema_version"] != SCHEMA_VERSION:
            raise TrajectoryError(
                "schema_version", f"must be {SCHEMA_VERSION!r}, got {str(data['schema_version'])[:60]!r}"
            )
        model = self.object(data["model"], "model", {"name", "kind", "mask_id", "eos_ids"})
        name = self.text(model["name"], "model.name", 1000)
        kind = model["kind"]
        if kind not in ("diffusion", "autoregressive"):
            raise TrajectoryError("model.kind", f"must be 'diffusion' or 'autoregressive', got {str(kind)[:40]!r}")
        mask_id = self.integer(model["mask_id"], "model.mask_id", 0, MAX_TOKEN_ID)
        eos_ids = tuple(int(i) for i in self.int_array(model["eos_ids"], "model.eos_ids", 0, MAX_TOKEN_ID))
        prompt = self.text(data["prompt"], "prompt")
        if not isinstance(data["config"], dict):
            raise TrajectoryError("config", f"must be an object, got {type(data['config']).__name__}")
        try:
            config = SamplerConfig.from_dict(data["config"])
        except ConfigError as error:
            raise TrajectoryError(f"config.{error.field}", error.message) from None
        record_topk = config.record_topk

        initial = self.int_array(data["initial_tokens"], "initial_tokens", 0, MAX_TOKEN_ID)
        length = len(initial)
        if length == 0:
            raise TrajectoryError("initial_tokens", "must not be empty")
        prompt_length = self.integer(data["prompt_length"], "prompt_length", 0, length)
        slots = self.positions(data["slots"], "slots", length)
        if slots.size == 0:
            raise TrajectoryError("slots", "must name at least one generation position")
        fixed = np.ones(length, dtype=bool)
        fixed[slots] = False
        if not bool((~fixed[prompt_length:]).all()):
            raise TrajectoryError("slots", "every position from prompt_length on must be a generation slot")
        if noise == "mask" and not bool((initial[slots] == mask_id).all()):
            raise TrajectoryError("initial_tokens", "every slot must hold model.mask_id initially")

        vocab_data = self.object(data["vocab"], "vocab", {"ids", "texts"})
        vocab_ids = self.int_array(vocab_data["ids"], "vocab.ids", 0, MAX_TOKEN_ID)
        if vocab_ids.size > MAX_VOCAB or (vocab_ids.size and not bool((np.diff(vocab_ids) > 0).all())):
            raise TrajectoryError("vocab.ids", f"must be sorted, without repeats, at most {MAX_VOCAB} ids")
        texts = self.array(vocab_data["texts"], "vocab.texts", len(vocab_ids), MAX_VOCAB)
        vocab = {
            int(i): self.text(t, f"vocab.texts[{n}]", MAX_TOKEN_TEXT_CHARS)
            for n, (i, t) in enumerate(zip(vocab_ids.tolist(), texts, strict=True))
        }
        self.known = vocab_ids
        self.require_known(initial[fixed] if noise == "mask" else initial, "initial_tokens")

        final_text = self.text(data["final_text"], "final_text")
        answer_text = self.text(data["answer_text"], "answer_text")
        steps = self.array(data["steps"], "steps", limit=MAX_STEPS)

        masked = ~fixed
        tokens = initial
        # Read-only arrays are shared between states where nothing changed (no commit, empty window), so
        # memory follows the document's content rather than steps x positions.
        blank = Blank.of(length, record_topk)
        known = {"fixed": fixed, "prompt_length": prompt_length, "eos_ids": eos_ids, "blank": blank}
        states = [step_state(step=0, block=0, tokens=tokens, masked=masked, **known)]
        nfe, elapsed = 0, 0.0
        for index, raw in enumerate(steps):
            where = f"steps[{index}]"
            step = self.object(raw, where, _STEP_KEYS | (_TOPK_KEYS if record_topk else set()), _OPTIONAL_STEP_KEYS)
            block = self.integer(step["block"], f"{where}.block", 0, MAX_POSITIONS)
            nfe = self.integer(step["nfe"], f"{where}.nfe", nfe, 2 * MAX_STEPS)
            elapsed = self.number(step["elapsed"], f"{where}.elapsed", elapsed, 1e9)
            committed = self.positions(step["committed"], f"{where}.committed", length)
            committed_ids = self.int_array(
                step["committed_ids"], f"{where}.committed_ids", 0, MAX_TOKEN_ID, length=len(committed)
            )
            self.require_known(committed_ids, f"{where}.committed_ids")
            remasked = self.positions(step["remasked"], f"{where}.remasked", length)
            if not bool(masked[committed].all()):
                raise TrajectoryError(f"{where}.committed", "commits a position that is not a masked slot")
            if bool(fixed[remasked].any() or masked[remasked].any()):
                raise TrajectoryError(f"{where}.remasked", "re-masks a position that is not a committed slot")
            window = self.positions(step["window"], f"{where}.window", length)
            width = len(window)
            readings = {
                "window": window,
                "confidence": self.float_array(step["confidence"], f"{where}.confidence", width, -1e9, 1e9),
                "prob": self.float_array(step["prob"], f"{where}.prob", width, 0.0, 1.0),
                "proposal": self.int_array(step["proposal"], f"{where}.proposal", -1, MAX_TOKEN_ID, length=width),
            }
            self.require_known(readings["proposal"][readings["proposal"] >= 0], f"{where}.proposal")
            if record_topk:
                rows_ids = self.array(step["topk_ids"], f"{where}.topk_ids", width)
                rows_probs = self.array(step["topk_probs"], f"{where}.topk_probs", width)
                topk_ids = [
                    self.int_array(r, f"{where}.topk_ids[{n}]", -1, MAX_TOKEN_ID, TOPK) for n, r in enumerate(rows_ids)
                ]
                topk_probs = [
                    self.float_array(r, f"{where}.topk_probs[{n}]", TOPK, 0.0, 1.0) for n, r in enumerate(rows_probs)
                ]
                readings["topk_ids"] = np.asarray(topk_ids, dtype=np.int64).reshape(width, TOPK)
                readings["topk_probs"] = np.asarray(topk_probs, dtype=np.float64).reshape(width, TOPK)
                self.require_known(readings["topk_ids"][readings["topk_ids"] >= 0], f"{where}.topk_ids")
            edited, edited_ids = self.changes(step, "edited", where, length)
            drafted, drafted_ids = self.changes(step, "drafted", where, length)
            if bool(masked[edited].any() or fixed[edited].any()) or np.isin(edited, committed).any() or np.isin(
                edited, remasked
            ).any():
                raise TrajectoryError(f"{where}.edited", "edits a position that is not a written slot")
            if bool((tokens[edited] == edited_ids).any()):
                raise TrajectoryError(f"{where}.edited_ids", "an edit must change the token")
            edited_from = tokens[edited]
            if committed.size or remasked.size or edited.size or drafted.size:
                tokens, masked = tokens.copy(), masked.copy()
                tokens[committed] = committed_ids
                masked[committed] = False
                tokens[remasked] = mask_id
                masked[remasked] = True
                tokens[edited] = edited_ids
                if bool(fixed[drafted].any() or not masked[drafted].all()):
                    raise TrajectoryError(f"{where}.drafted", "drafts a position that is not a slot still masked")
                tokens[drafted] = drafted_ids
            states.append(
                step_state(
                    step=index + 1,
                    block=block,
                    tokens=tokens,
                    masked=masked,
                    committed=committed,
                    remasked=remasked,
                    edited=edited,
                    edited_from=edited_from,
                    nfe=nfe,
                    elapsed=elapsed,
                    **known,
                    **readings,
                )
            )
        return Trajectory(
            model=name,
            model_kind=kind,
            mask_id=mask_id,
            eos_ids=eos_ids,
            prompt=prompt,
            config=config.to_dict(),
            states=states,
            vocab=vocab,
            final_text=final_text,
            answer_text=answer_text,
            noise=noise,
            source=source,
            steps_per_block=steps_per_block,
        )

    def changes(self, step: dict, name: str, where: str, length: int) -> tuple[np.ndarray, np.ndarray]:
        """An optional (positions, ids) pair of a step: ``edited``/``edited_ids`` or ``drafted``/``drafted_ids``."""
        if (name in step) != (f"{name}_ids" in step):
            raise TrajectoryError(f"{where}.{name}", f"{name} and {name}_ids come together")
        if name not in step:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
        positions = self.positions(step[name], f"{where}.{name}", length)
        ids = self.int_array(step[f"{name}_ids"], f"{where}.{name}_ids", 0, MAX_TOKEN_ID, length=len(positions))
        self.require_known(ids, f"{where}.{name}_ids")
        return positions, ids

    def source(self, value: Any) -> dict[str, Any] | None:
        """The optional ``source`` object: at most 64 keys, each a short string, number, bool or null."""
        if value is None:
            return None
        if not isinstance(value, dict) or len(value) > MAX_SOURCE_KEYS:
            raise TrajectoryError("source", f"must be an object of at most {MAX_SOURCE_KEYS} entries")
        for key, item in value.items():
            if len(key) > 100 or not (item is None or type(item) in (str, int, float, bool)):
                raise TrajectoryError(f"source.{key[:40]}", "must be a string, number, true/false or null")
            if isinstance(item, str):
                self.text(item, f"source.{key[:40]}", 1000)
        return dict(value)

    def require_known(self, ids: np.ndarray, where: str) -> None:
        missing = np.setdiff1d(np.asarray(ids, dtype=np.int64), self.known)
        if missing.size:
            raise TrajectoryError(where, f"token id {int(missing[0])} has no entry in vocab")
