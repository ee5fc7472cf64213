"""One bridge from the Hugging Face text-diffusion stack to our per-step ``StepState`` records.

Two protocols are recorded, so their runs play in the canvas, heatmap, scrubber, inspector, exports
and replay exactly like our own sampler's:

* transformers: any ``generate(..., streamer=...)`` that calls ``streamer.put_draft(value=...)`` at
  every denoising step (``logits=...`` instead when the streamer sets ``_takes_logits``), ``put``
  for the prompt and for every finished canvas, and ``end`` (DiffusionGemma's
  ``DiffusionGemmaGenerationMixin.generate``). ``DraftRecorder`` is such a streamer.
* diffusers: any text pipeline with ``callback_on_step_end`` (``DiffusionGemmaPipeline``,
  ``LLaDA2Pipeline``). ``PipelineRecorder`` is such a callback; ``tensor_inputs`` names what it reads.

What each source exposes is what gets recorded (``StepRecorder.record``): the canvas of the block
being refined, which of its positions are accepted (committed) so far, which were edited (a written
token replaced by another: LLaDA 2.1 editing) and which were renoised (accepted before, back to
noise now: recorded in ``StepState.remasked``), and per position the probability of the token shown
and, from logits, its entropy (``confidence`` = -entropy) and top-5 tokens. Where a source says
nothing about acceptance (a plain ``put_draft(value)``), every position is a draft until its canvas
is finished (``put``).

Uniform-state runs (no [MASK] token: DiffusionGemma) keep the not-yet-accepted positions ``masked``
but show their current draft token there (the model's argmax, as ``TextDiffusionStreamer`` prints),
so nothing is drawn as a mask that the model never saw as one.

Control: ``pull_states`` turns a run that pushes states into a generator that yields them one at a
time. The run's thread waits after each step until the next state is asked for, so stepping works
and closing the generator (Stop) ends the run at its next step: the sink raises ``RunStopped`` inside
the source's loop, which aborts it before another forward pass. An exception from the source comes
out of the generator as ``BridgeError`` naming the source and the step.
"""

from __future__ import annotations

import math
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import numpy as np
import torch

from ..state import TOPK, Blank, StepState, step_state

Sink = Callable[[StepState], None]


class RunStopped(Exception):
    """Raised inside a recorded run when its consumer stopped it (the source's loop unwinds)."""


class BridgeError(RuntimeError):
    """A recorded pipeline or ``generate`` raised; the message names the source and the step."""


# -- readings from logits ------------------------------------------------------------------------------


def logit_readings(logits: torch.Tensor) -> dict[str, np.ndarray]:
    """Per position (rows of ``logits``, positions x vocab): the argmax ``draft``, its probability
    ``prob``, the entropy in nats of softmax(logits) ``entropy``, and the top-5 ids / probabilities."""
    probs = logits.detach().to(torch.float64).softmax(-1)
    top = probs.topk(min(TOPK, probs.shape[-1]), dim=-1)
    return {
        "draft": top.indices[:, 0].cpu().numpy(),
        "prob": top.values[:, 0].cpu().numpy(),
        "entropy": torch.special.entr(probs).sum(-1).cpu().numpy(),
        "topk_ids": top.indices.cpu().numpy(),
        "topk_probs": top.values.cpu().numpy(),
    }


def entropy_bound_accepted(entropy: np.ndarray, bound: float) -> np.ndarray:
    """DiffusionGemma's ``EntropyBoundSampler`` acceptance recomputed: sort by entropy, accept the
    prefix with cumsum(H) - H <= bound (exactly its formula, on the logits it streamed)."""
    order = np.argsort(entropy, kind="stable")
    ordered = entropy[order]
    keep = (np.cumsum(ordered) - ordered) <= bound
    accepted = np.zeros(entropy.shape, dtype=bool)
    accepted[order] = keep
    return accepted


# -- the state builder ----------------------------------------------------------------------------------


class StepRecorder:
    """Builds the ``StepState`` of each recorded step from what the source exposes at its block.

    The canvas is the prompt plus ``gen_length`` slots, all masked (``mask_id``) at the start; a block
    is the window ``[offset, offset + width)`` the source refines. ``uniform``: not-yet-accepted
    positions show their draft token (uniform-state diffusion); else they show ``mask_id``.
    ``sink`` receives every state (it may raise ``RunStopped``).
    """

    def __init__(
        self,
        prompt_ids: Sequence[int],
        gen_length: int,
        *,
        mask_id: int,
        eos_ids: Sequence[int],
        uniform: bool,
        record_topk: bool = True,
        sink: Sink | None = None,
        cost: int = 1,
    ):
        self.prompt_length = len(prompt_ids)
        self.length = self.prompt_length + int(gen_length)
        self.mask_id, self.eos_ids, self.uniform = int(mask_id), tuple(int(i) for i in eos_ids), uniform
        self.record_topk = record_topk
        self.fixed = np.zeros(self.length, dtype=bool)
        self.fixed[: self.prompt_length] = True
        self.fixed.flags.writeable = False
        self.tokens = np.array(list(prompt_ids) + [self.mask_id] * int(gen_length), dtype=np.int64)
        self.masked = ~self.fixed
        self.blank = Blank.of(self.length, record_topk)
        self.sink = sink
        self.cost = cost
        self.nfe = 0
        self.start = time.perf_counter()
        self.states: list[StepState] = []
        self.matched: bool | None = None  # set by ``reconcile``: did the recording end as the source did?
        self.block_steps: list[int] = []  # model steps spent per block
        # Per position, the last probability a step read there and the token it is the probability
        # of: a bookkeeping step (no forward) that writes that token carries it (``record``).
        self.last_prob = np.full(self.length, np.nan)
        self.last_prob_token = np.full(self.length, -1, dtype=np.int64)
        self._emit(self._state(step=0, block=0))

    def _state(self, **readings) -> StepState:
        return step_state(
            tokens=self.tokens.copy(),
            masked=self.masked.copy(),
            fixed=self.fixed,
            prompt_length=self.prompt_length,
            eos_ids=self.eos_ids,
            blank=self.blank,
            nfe=self.nfe,
            elapsed=time.perf_counter() - self.start,
            **readings,
        )

    def _emit(self, state: StepState) -> StepState:
        self.states.append(state)
        if self.sink is not None:
            self.sink(state)
        return state

    def record(
        self,
        block: int,
        offset: int,
        tokens: np.ndarray,
        accepted: np.ndarray,
        *,
        draft: np.ndarray | None = None,
        prob: np.ndarray | None = None,
        entropy: np.ndarray | None = None,
        topk_ids: np.ndarray | None = None,
        topk_probs: np.ndarray | None = None,
        edited: np.ndarray | None = None,
        prob_of: np.ndarray | None = None,
        forward: bool = True,
    ) -> StepState:
        """One step at the block ``[offset, offset + len(tokens))`` (positions past the canvas are
        ignored, prompt positions inside the block are never changed).

        tokens: the block's tokens as the source holds them; accepted (bool): which are accepted /
        committed after the step; draft: what a not-accepted position shows in a uniform-state run
        (default: ``tokens``); edited (bool): positions the source says it rewrote (default:
        accepted before and now, with a different token). prob / entropy / top-k: readings per block
        position; ``prob_of``: the tokens ``prob`` is the probability of (default: ``draft``).
        ``forward``: the step ran the model (counts one NFE); False for a bookkeeping step such as an
        early stop that commits the drafts, or a finished canvas. Such a step carries, at each
        position, the last probability read there if it shows the token that probability was for (a
        draft accepted when its canvas finishes keeps its confidence), else NaN.
        """
        width = min(len(tokens), self.length - offset)
        positions = np.arange(offset, offset + width)
        keep = ~self.fixed[positions]
        positions = positions[keep]

        def cut(values):
            return None if values is None else np.asarray(values)[:width][keep]

        tokens, accepted = cut(tokens).astype(np.int64), cut(accepted).astype(bool)
        draft = tokens if draft is None else cut(draft).astype(np.int64)
        was_masked = self.masked[positions].copy()
        old = self.tokens[positions].copy()
        shown = np.where(accepted, tokens, draft if self.uniform else self.mask_id)
        if prob is not None:
            prob = cut(prob)
            self.last_prob[positions] = prob
            self.last_prob_token[positions] = draft if prob_of is None else cut(prob_of).astype(np.int64)
        elif not forward:  # a bookkeeping step: a written token keeps the probability it was drafted with
            carried = (shown == self.last_prob_token[positions]) & (accepted | self.uniform)
            prob = np.where(carried, self.last_prob[positions], np.nan) if carried.any() else None
        committed = positions[was_masked & accepted]
        renoised = positions[~was_masked & ~accepted]
        if edited is None:
            changed = ~was_masked & accepted & (old != tokens)
        else:
            changed = cut(edited).astype(bool) & ~was_masked & accepted & (old != tokens)
        self.tokens[positions] = shown
        self.masked[positions] = ~accepted
        if forward:
            self.nfe += self.cost
        while len(self.block_steps) <= block:
            self.block_steps.append(0)
        self.block_steps[block] += int(forward)
        confidence = None if entropy is None else -cut(entropy)
        readings = {
            "window": positions,
            "scored": was_masked,
            "prob": prob,
            "confidence": confidence if confidence is not None or not forward else prob,
            "proposal": draft,
        }
        if self.record_topk and topk_ids is not None:
            readings["topk_ids"], readings["topk_probs"] = cut(topk_ids), cut(topk_probs)
        return self._emit(
            self._state(
                step=len(self.states),
                block=block,
                committed=committed,
                remasked=renoised,
                edited=positions[changed],
                edited_from=old[changed],
                **{k: v for k, v in readings.items() if v is not None},
            )
        )

    @property
    def final(self) -> StepState:
        return self.states[-1]

    def reconcile(self, generated: Sequence[int], block: int) -> bool:
        """Check the recorded canvas against the tokens the source finally returned (its generated
        region; positions it left at ``mask_id``, e.g. after an early end of text, are not compared).
        Where they differ, record one more state that writes what the source returned (no NFE).
        True when the recording already matched (the normal case)."""
        generated = np.asarray(generated, dtype=np.int64)[: self.length - self.prompt_length]
        span = slice(self.prompt_length, self.prompt_length + len(generated))
        filled = generated != self.mask_id
        self.matched = np.array_equal(self.tokens[span][filled], generated[filled]) and not self.masked[span][filled].any()
        if self.matched:
            return True
        self.record(block, self.prompt_length, np.where(filled, generated, self.tokens[span]),
                    filled | ~self.masked[span], forward=False)
        return False


# -- transformers: a draft streamer -------------------------------------------------------------------------


class DraftRecorder:
    """A transformers streamer (``put`` / ``put_draft`` / ``end``) that records every draft.

    ``put`` first receives the prompt, then each finished canvas; ``put_draft`` each denoising step's
    draft. With ``takes_logits`` it asks for the step's logits (``_takes_logits``) and records the
    argmax draft, its probability, the entropy and top-5 per position; ``entropy_bound`` (the run's
    ``EntropyBoundSampler`` bound) then marks which positions the step accepted, recomputed from those
    logits with the sampler's own formula. Without logits only the draft tokens are known, and every
    position stays a draft until its canvas is finished. Batch size 1.
    """

    def __init__(self, recorder_factory: Callable[[list[int]], StepRecorder], canvas_length: int,
                 takes_logits: bool = True, entropy_bound: float | None = None):
        self._factory = recorder_factory
        self.canvas_length = int(canvas_length)
        self._takes_logits = bool(takes_logits)
        self.entropy_bound = entropy_bound
        self.recorder: StepRecorder | None = None
        self.block = 0
        self.ended = False

    def _offset(self) -> int:
        return self.recorder.prompt_length + self.block * self.canvas_length

    def put(self, value) -> None:
        ids = _one_row(value, "put")
        if self.recorder is None:  # the prompt
            self.recorder = self._factory(ids)
            return
        # A finished canvas: every position accepted with the token generate() appended.
        self.recorder.record(self.block, self._offset(), np.asarray(ids), np.ones(len(ids), dtype=bool), forward=False)
        self.block += 1

    def put_draft(self, value=None, logits=None, **_: Any) -> None:
        if self.recorder is None:
            raise BridgeError("put_draft before put(prompt): not the streamer protocol of transformers' generate()")
        if logits is not None:
            rows = logits[0] if logits.dim() == 3 else logits
            readings = logit_readings(rows)
            draft = readings["draft"]
            accepted = (
                entropy_bound_accepted(readings["entropy"], self.entropy_bound)
                if self.entropy_bound is not None
                else np.zeros(len(draft), dtype=bool)
            )
            self.recorder.record(self.block, self._offset(), draft, accepted, prob=readings["prob"],
                                 entropy=readings["entropy"], topk_ids=readings["topk_ids"],
                                 topk_probs=readings["topk_probs"])
        else:
            draft = np.asarray(_one_row(value, "put_draft"))
            self.recorder.record(self.block, self._offset(), draft, np.zeros(len(draft), dtype=bool))

    def end(self) -> None:
        self.ended = True


def _one_row(value, where: str) -> list[int]:
    if value.dim() > 1:
        if value.shape[0] != 1:
            raise BridgeError(f"{where}: only batch size 1 is recorded, got a batch of {value.shape[0]}")
        value = value[0]
    return [int(i) for i in value.tolist()]


# -- the other direction: our sampler's states into a transformers streamer -------------------------------


def drive_streamer(states: Iterable[StepState], streamer, *, block_length: int | None = None,
                   vocab_size: int | None = None) -> StepState:
    """Play our sampler's ``states`` into a transformers streamer with the protocol of DiffusionGemma's
    ``generate()``, so ``TextDiffusionStreamer`` (or ``DraftRecorder``) shows our models' runs too.

    ``put(prompt ids)`` first; every model step ``put_draft(value=draft)`` with the draft of the
    block being written (its written tokens, and at still-masked positions the step's proposal, the
    mask id where it has none), as a (1, block) tensor; when a block is complete, ``put(its tokens)``
    up to the answer's end (the end-of-text token and what follows are not text); ``end()`` after
    the last state. A streamer that sets ``_takes_logits`` gets ``put_draft(logits=...)`` instead, a
    (1, block, ``vocab_size``) tensor rebuilt from what a state keeps (it has no full logits): the log
    of the recorded top-5 probabilities at masked positions, 0 at the written token elsewhere, -inf
    for every other token; its argmax is the draft. Blocks are ``block_length`` generation slots
    (None: one block). Batch of one, text appended after the prompt (no [MASK] placeholders inside
    it). Returns the final state."""
    states = iter(states)
    first = next(states)
    slots = np.flatnonzero(~first.fixed)
    if slots.size and (slots[0] != first.prompt_length or not np.array_equal(slots, np.arange(slots[0], first.length))):
        raise ValueError("drive_streamer streams text written after the prompt; [MASK] placeholders inside it are not")
    takes_logits = bool(getattr(streamer, "_takes_logits", False))
    if takes_logits and vocab_size is None:
        raise ValueError("drive_streamer: a streamer that takes logits needs vocab_size")
    size = int(block_length) if block_length else max(int(slots.size), 1)
    streamer.put(torch.tensor(first.tokens[: first.prompt_length].tolist())[None])
    confirmed = 0  # blocks already put
    state = first

    def span(block: int) -> slice:
        start = first.prompt_length + block * size
        return slice(start, min(start + size, first.length))

    def put_finished(state: StepState, upto: int) -> int:
        nonlocal confirmed
        while confirmed < upto:
            where = span(confirmed)
            end = min(where.stop, state.answer_end)
            if end > where.start:
                streamer.put(torch.tensor(state.tokens[where.start : end].tolist())[None])
            confirmed += 1
        return confirmed

    for state in states:  # every state after the first is one model step
        block = int(state.block)
        put_finished(state, block)  # blocks before the active one are done
        where = span(block)
        masked = state.masked[where]
        proposal = state.proposal[where]
        draft = np.where(masked & (proposal >= 0), proposal, state.tokens[where])
        if takes_logits:
            logits = torch.full((1, len(draft), int(vocab_size)), -math.inf)
            for i, position in enumerate(range(where.start, where.stop)):
                ids = state.topk_ids[position] if state.topk_ids is not None else None
                if masked[i] and ids is not None and (ids >= 0).any():
                    keep = ids >= 0
                    logits[0, i, torch.as_tensor(ids[keep])] = torch.as_tensor(
                        np.log(np.maximum(state.topk_probs[position][keep], 1e-30)), dtype=torch.float32)
                else:
                    logits[0, i, int(draft[i])] = 0.0
            streamer.put_draft(logits=logits)
        else:
            streamer.put_draft(value=torch.tensor(draft.tolist())[None])
        if not state.masked[span(block)].any():
            put_finished(state, block + 1)
    if not state.masked.any():
        put_finished(state, -(-int(slots.size) // size))
    streamer.end()
    return state


# -- diffusers: a step-end callback -------------------------------------------------------------------------


class PipelineRecorder:
    """A diffusers ``callback_on_step_end`` that records each step of a text pipeline.

    * ``DiffusionGemmaPipeline`` (uniform-state, canvases of ``canvas_length`` after the prompt):
      reads ``canvas`` and ``logits``. Accepted positions: ``BlockRefinementScheduler``'s committed set
      (the scheduler's own ``_committed`` state in its uniform mode) or, for ``EntropyBoundScheduler``,
      its acceptance recomputed from the temperature-scaled logits with its formula. The pipeline's
      adaptive stop (stable and confident) runs after the callback, so it is evaluated here with the
      pipeline's formula on the same logits (``stability_threshold`` / ``confidence_threshold`` must
      be the values the pipeline was called with): when it fires, the step commits the argmax draft,
      as the pipeline does, and the block's remaining steps are saved.
    * ``LLaDA2Pipeline`` (mask-based, editing): reads ``block_x`` (the sequence up to the active
      block's end), ``transfer_index``, ``editing_transfer_index``, ``sampled_tokens`` and
      ``sampled_probs``; accepted = not [MASK], edits as the scheduler reports them.
    """

    GEMMA_INPUTS = ["canvas", "logits"]
    LLADA2_INPUTS = ["block_x", "editing_transfer_index", "sampled_tokens", "sampled_probs", "active_block"]

    def __init__(self, recorder: StepRecorder, kind: str, *, block_length: int,
                 stability_threshold: int = 1, confidence_threshold: float | None = None):
        if kind not in ("diffusion_gemma", "llada2"):
            raise ValueError(f"kind must be 'diffusion_gemma' or 'llada2', got {kind!r}")
        self.recorder, self.kind, self.block_length = recorder, kind, int(block_length)
        self.stability_threshold, self.confidence_threshold = stability_threshold, confidence_threshold
        self.block = -1
        self.step_in_block = 0
        self._history: torch.Tensor | None = None
        self._finished = False

    @property
    def tensor_inputs(self) -> list[str]:
        return list(self.GEMMA_INPUTS if self.kind == "diffusion_gemma" else self.LLADA2_INPUTS)

    def __call__(self, pipeline, step: int, timestep: int, kwargs: dict) -> dict:
        if self.kind == "diffusion_gemma":
            self._gemma_step(pipeline, int(timestep), kwargs)
        else:
            self._llada2_step(kwargs)
        return kwargs

    def _gemma_step(self, pipeline, step_idx: int, kwargs: dict) -> None:
        if step_idx == 0:
            self.block += 1
            self._history = None
        canvas = kwargs["canvas"][0].cpu().numpy()
        logits = kwargs["logits"]
        scheduler = pipeline.scheduler
        pred_logits = logits
        committed = getattr(scheduler, "_committed", None)
        if hasattr(scheduler.config, "entropy_bound"):  # EntropyBoundScheduler: scaled logits, recomputed acceptance
            steps = scheduler.num_inference_steps
            fraction = (steps - step_idx) / steps
            pred_logits = logits / (scheduler.config.t_min + (scheduler.config.t_max - scheduler.config.t_min) * fraction)
            entropy = torch.distributions.Categorical(logits=pred_logits).entropy()[0].cpu().numpy()
            accepted = entropy_bound_accepted(entropy, float(scheduler.config.entropy_bound))
        elif committed is not None:
            accepted = committed[0].cpu().numpy().copy()
        else:
            accepted = np.zeros(canvas.shape, dtype=bool)
        readings = logit_readings(pred_logits[0])
        offset = self.recorder.prompt_length + self.block * self.block_length
        self.recorder.record(self.block, offset, canvas, accepted, draft=readings["draft"], prob=readings["prob"],
                             entropy=readings["entropy"], topk_ids=readings["topk_ids"],
                             topk_probs=readings["topk_probs"])
        if self.confidence_threshold is not None and self._stops(pred_logits):
            # The pipeline's early stop: the canvas becomes the argmax draft and the block ends here.
            draft = pred_logits.argmax(dim=-1)[0].cpu().numpy()
            self.recorder.record(self.block, offset, draft, np.ones(draft.shape, dtype=bool), forward=False)
        elif step_idx == scheduler.num_inference_steps - 1 and not accepted.all():
            # The block's last step: the pipeline keeps the canvas as it is, noise at unaccepted positions.
            self.recorder.record(self.block, offset, canvas, np.ones(canvas.shape, dtype=bool), forward=False)

    def _stops(self, pred_logits: torch.Tensor) -> bool:
        """The pipeline's adaptive stop, same formula and tensors (batch of one)."""
        argmax = pred_logits.argmax(dim=-1)
        if self._history is None:
            self._history = torch.full((max(self.stability_threshold, 1), *argmax.shape), -1, dtype=torch.long,
                                       device=argmax.device)
        stable = (self._history == argmax[None]).all(dim=-1).all(dim=0)
        self._history = torch.roll(self._history, shifts=-1, dims=0)
        self._history[-1] = argmax
        confident = torch.distributions.Categorical(logits=pred_logits.float()).entropy().mean(-1) < (
            self.confidence_threshold
        )
        return bool((stable & confident).all())

    def _llada2_step(self, kwargs: dict) -> None:
        block_x = kwargs["block_x"][0]
        offset = block_x.shape[0] - self.block_length
        block = max(offset - (self.recorder.prompt_length // self.block_length) * self.block_length, 0)
        block //= self.block_length
        tokens = block_x[offset:].cpu().numpy()
        accepted = tokens != self.recorder.mask_id
        active = kwargs["active_block"][0].cpu().numpy()
        sampled = kwargs["sampled_tokens"][0].cpu().numpy()
        self.recorder.record(
            block, offset, tokens, accepted,
            draft=np.where(active, sampled, tokens),
            prob=kwargs["sampled_probs"][0].float().cpu().numpy(),
            prob_of=sampled,
            edited=kwargs["editing_transfer_index"][0].cpu().numpy(),
        )


# -- push to pull ------------------------------------------------------------------------------------------


def pull_states(run: Callable[[Sink], Any], source: str) -> Iterator[StepState]:
    """Yield the states a pushing ``run(sink)`` produces, one per ``next()``, computing each step only
    when it is asked for. Closing the generator stops the run at its next step (``RunStopped``); an
    exception in the run is raised here as ``BridgeError`` naming ``source`` and the step."""
    handoff: queue.Queue = queue.Queue(maxsize=1)
    go = threading.Semaphore(0)
    stop = threading.Event()
    count = [0]

    def sink(state: StepState) -> None:
        if stop.is_set():
            raise RunStopped(f"{source}: stopped")
        handoff.put(("state", state))
        count[0] += 1
        go.acquire()
        if stop.is_set():
            raise RunStopped(f"{source}: stopped")

    def work() -> None:
        try:
            handoff.put(("done", run(sink)))
        except RunStopped:
            handoff.put(("stopped", None))
        except BaseException as error:  # noqa: BLE001 (handed to the consumer)
            handoff.put(("error", error))

    thread = threading.Thread(target=work, name=f"bridge-{source}", daemon=True)
    thread.start()
    try:
        while True:
            kind, value = handoff.get()
            if kind == "state":
                yield value
                go.release()
                continue
            if kind == "error":
                raise BridgeError(
                    f"{source} failed after step {max(count[0] - 1, 0)}: {type(value).__name__}: {value}"
                ) from value
            return
    finally:
        stop.set()
        go.release()
