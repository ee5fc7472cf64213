"""Fair side-by-side runs: several decoders advanced on one machine as if each had it alone.

A live race between the autoregressive twin and the diffusion model (or between two diffusion
strategies) cannot run both at full speed at once on a 2-core laptop: two decoders in parallel
would slow each other down unevenly. So ``race`` interleaves them on a *virtual clock*: every lane
keeps the seconds its own steps took, and the lane that has used the least time so far takes the
next step. At any moment all lanes have spent about the same compute, the screen shows each lane
where it would be at that time had it run alone, and each lane's timer is its own compute time.
The lane that finishes first is the one that would have finished first alone.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from .sampler import SamplerConfig, denoise


@dataclass(frozen=True)
class Lane:
    """One contestant: a label, a model adapter, a prompt and its sampler settings."""

    label: str
    model: object
    prompt: str
    config: SamplerConfig


@dataclass(frozen=True)
class LaneState:
    """A lane's latest ``StepState``, its own compute seconds so far, and whether it has finished."""

    label: str
    state: object
    seconds: float
    done: bool


def race(lanes: Sequence[Lane]) -> Iterator[list[LaneState]]:
    """Yield the state of every lane after each step of the lane with the least compute time so far.

    Validation happens at the call (each lane's ``denoise`` raises ``ConfigError`` / ``PromptError``
    before anything runs). The first yield holds every lane's initial canvas.
    """
    iterators = [denoise(lane.model, lane.prompt, lane.config) for lane in lanes]
    current = [LaneState(lane.label, next(it), 0.0, False) for lane, it in zip(lanes, iterators, strict=True)]

    def run() -> Iterator[list[LaneState]]:
        yield list(current)
        while not all(lane.done for lane in current):
            index = min((i for i, lane in enumerate(current) if not lane.done), key=lambda i: current[i].seconds)
            lane = current[index]
            started = time.perf_counter()
            state = next(iterators[index], None)
            spent = time.perf_counter() - started
            if state is None:
                current[index] = LaneState(lane.label, lane.state, lane.seconds, True)
            else:
                current[index] = LaneState(lane.label, state, lane.seconds + spent, not bool(state.masked.any()))
            yield list(current)

    return run()
