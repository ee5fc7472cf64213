"""Fair side-by-side runs: several decoders advanced on one machine as if each had it alone.

A live race between the autoregressive twin and the diffusion model (or between two diffusion
strategies) cannot run both at full speed at once on a 2-core laptop: two decoders in parallel
would slow each other down unevenly. So ``race`` interleaves them on a *virtual clock*: every lane
keeps the seconds its own steps took, and the lane that has used the least time so far takes the
next step. At any moment all lanes have spent about the same compute, the screen shows each lane
where it would be at that time had it run alone, and each lane's timer is its own compute time.
The lane that finishes first is the one that would have finished first alone.

Every lane also keeps a trace (``LaneState.trace``, one ``speed.StepRecord`` per step): the step's
seconds, forwards and commits, and each call into the network (query tokens fed, cached tokens
attended to, seconds inside the call). The lane's model is wrapped in a meter that records the calls
and otherwise passes everything through, so decoding is unchanged. ``dlm_core.speed`` turns the
traces into the race's explanation (cost per forward, break-even tokens per pass) and re-times them
on a large model and GPU.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from .sampler import SamplerConfig, denoise
from .speed import ForwardCall, StepRecord


@dataclass(frozen=True)
class Lane:
    """One contestant: a label, a model adapter, a prompt and its sampler settings."""

    label: str
    model: object
    prompt: str
    config: SamplerConfig


@dataclass(frozen=True)
class LaneState:
    """A lane's latest ``StepState``, its own compute seconds so far, whether it has finished, and
    its trace so far (one ``StepRecord`` per step; ``seconds`` is their sum)."""

    label: str
    state: object
    seconds: float
    done: bool
    trace: tuple[StepRecord, ...] = ()


class MeteredModel:
    """A model adapter that records every network call (``logits`` / ``forward_cached``) into
    ``calls`` and delegates everything else to the wrapped adapter."""

    def __init__(self, model):
        self.wrapped = model
        self.calls: list[ForwardCall] = []

    def __getattr__(self, name: str):
        return getattr(self.wrapped, name)

    def _timed(self, fn, input_ids, context: int, *args):
        started = time.perf_counter()
        result = fn(input_ids, *args)
        device = getattr(self.wrapped, "device", None)
        if getattr(device, "type", "cpu") == "cuda":  # GPU calls return early; wait so the seconds are real
            import torch

            torch.cuda.synchronize(device)
        rows, length = input_ids.shape
        self.calls.append(ForwardCall(int(rows), int(length), context, time.perf_counter() - started))
        return result

    def logits(self, input_ids, attention_mask=None):
        return self._timed(self.wrapped.logits, input_ids, 0, attention_mask)

    def forward_cached(self, input_ids, cache=None, position_ids=None, logits_at=None):
        context = 0 if not cache else int(cache[0][0].shape[2])  # (k, v): batch x heads x length x dim
        return self._timed(self.wrapped.forward_cached, input_ids, context, cache, position_ids, logits_at)


def race(lanes: Sequence[Lane]) -> Iterator[list[LaneState]]:
    """Yield the state of every lane after each step of the lane with the least compute time so far.

    Validation happens at the call (each lane's ``denoise`` raises ``ConfigError`` / ``PromptError``
    before anything runs). The first yield holds every lane's initial canvas.
    """
    meters = [MeteredModel(lane.model) for lane in lanes]
    iterators = [denoise(meter, lane.prompt, lane.config) for meter, lane in zip(meters, lanes, strict=True)]
    current = [LaneState(lane.label, next(it), 0.0, False) for lane, it in zip(lanes, iterators, strict=True)]

    def run() -> Iterator[list[LaneState]]:
        yield list(current)
        while not all(lane.done for lane in current):
            index = min((i for i, lane in enumerate(current) if not lane.done), key=lambda i: current[i].seconds)
            lane, meter = current[index], meters[index]
            meter.calls.clear()
            started = time.perf_counter()
            state = next(iterators[index], None)
            spent = time.perf_counter() - started
            if state is None:
                current[index] = LaneState(lane.label, lane.state, lane.seconds, True, lane.trace)
            else:
                record = StepRecord(spent, state.nfe - lane.state.nfe, int(state.committed.size), tuple(meter.calls))
                done = not bool(state.masked.any())
                current[index] = LaneState(lane.label, state, lane.seconds + spent, done, (*lane.trace, record))
            yield list(current)

    return run()
