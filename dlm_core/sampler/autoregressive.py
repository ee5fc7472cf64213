"""Autoregressive decoding with a key/value cache, reported as the same ``StepState`` stream.

The autoregressive twin writes one token per forward pass, left to right: p(x) = prod_i p(x_i | x_<i).
With a KV cache (keys/values of every processed position kept per layer) each step feeds only the
newest token, so a step costs O(1) tokens of compute instead of O(length). The canvas is the same
as the diffusion sampler's (prompt, ``[MASK]`` placeholders, ``gen_length`` appended slots), walked
in reading order: runs of fixed tokens are fed in one forward, each slot is sampled from the model's
prediction at the position before it. So placeholders work too (left-context-only infilling).

Every step yields a ``StepState`` like ``denoise`` does (one committed slot per row and step,
``confidence`` = probability of the sampled token), so the UI, trajectory and benchmark treat AR
and diffusion runs alike. Sampling uses the sampler's own ``truncate`` (top-p, top-k) and float64
Gumbel-max (temperature), drawing ``torch.rand((rows, 1, vocab), float64)`` per step at T > 0 from
the run's private generator. Generation continues to the full length after an end-of-text token
(as the diffusion sampler does); ``answer_end`` marks where the answer stops.

NFE: one per forward call. The first call (the prefill of the prompt) already predicts the first
slot, so n slots after the prompt cost n forward calls.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence

import torch

from ..state import TOPK, Blank, StepState, step_state
from .config import ConfigError, SamplerConfig, steps_range
from .prompt import EncodedPrompt, PromptError, encode_prompt
from .rules import STRATEGY_RULES
from .sampling import gumbel_argmax, truncate


def check_autoregressive(model, config: SamplerConfig, slot_counts: Sequence[int] = ()) -> None:
    """The settings an autoregressive model can honour (used by ``denoise`` for any such model, and
    with the prompts' slot counts by this decoder); ``ConfigError`` naming the field otherwise."""
    ok = [name for name, rules in STRATEGY_RULES.items() if rules.autoregressive_ok]
    if config.strategy not in ok:
        raise ConfigError(
            "strategy",
            f"strategy must be {', '.join(ok)} for autoregressive model {model.name!r}, got {config.strategy}",
        )
    if config.cfg_scale > 0:
        raise ConfigError(
            "cfg_scale", f"cfg_scale must be 0 for autoregressive model {model.name!r}, got {config.cfg_scale}"
        )
    for slots in slot_counts:  # one token per forward: exactly one step per slot
        low, high = steps_range(slots, None, one_per_step=True)
        if config.steps is not None and not low <= config.steps <= high:
            raise ConfigError(
                "steps", f"steps must equal the number of generation slots ({slots}) or be None, got {config.steps}"
            )


def decode_autoregressive_batch(model, prompts: Sequence[str | EncodedPrompt], config: SamplerConfig) -> Iterator[list]:
    """KV-cached left-to-right decoding of several prompts in lockstep (one forward per step for all).

    Rows are right-padded; with causal attention, padding after a row's end is never attended by
    its real positions, so no attention mask is needed. Yields a list of ``StepState`` per step,
    starting with the initial canvases; a finished row repeats its final state.
    """
    if isinstance(prompts, str) or not isinstance(prompts, Sequence) or not prompts:
        raise PromptError("prompts", "prompts must be a non-empty list of strings")
    encoded = [encode_prompt(model, text, config.gen_length) for text in prompts]
    check_autoregressive(model, config, [len(e.slots) for e in encoded])
    if any(e.slots[0] == 0 for e in encoded):
        raise PromptError(
            "prompt", "prompt must not start with [MASK] for an autoregressive model (nothing to predict it from)"
        )
    if not getattr(model, "supports_cache", False):
        raise ConfigError("model", f"model {model.name!r} has no key/value cache for autoregressive decoding")

    def run() -> Iterator[list]:
        rows = len(encoded)
        lengths = [len(e.ids) for e in encoded]
        width = max(lengths)
        x = torch.full((rows, width), model.mask_id, dtype=torch.long)
        is_slot = torch.zeros((rows, width), dtype=torch.bool)
        for row, e in enumerate(encoded):
            x[row, : len(e.ids)] = torch.tensor(e.ids)
            is_slot[row, list(e.slots)] = True
        masked = is_slot.clone()
        fixed_np = [(~is_slot[row, :n]).numpy().copy() for row, n in enumerate(lengths)]
        blanks = [Blank.of(n, config.record_topk) for n in lengths]
        generator = torch.Generator(device=model.device).manual_seed(config.seed)
        nfe = [0] * rows
        start = time.perf_counter()

        def state(row: int, step: int, readings: dict) -> StepState:
            """Row ``row`` after ``step``; ``readings``: the committed slot's window values, if any."""
            n = lengths[row]
            return step_state(
                step=step,
                block=0,
                tokens=x[row, :n].numpy().copy(),
                masked=masked[row, :n].numpy().copy(),
                fixed=fixed_np[row],
                prompt_length=encoded[row].prompt_length,
                eos_ids=model.eos_ids,
                blank=blanks[row],
                nfe=nfe[row],
                elapsed=time.perf_counter() - start,
                **readings,
            )

        current = [state(row, 0, {}) for row in range(rows)]
        yield list(current)
        slot_positions = is_slot.any(0).nonzero().squeeze(1).tolist()
        cache, fed, step = None, 0, 0
        for position in slot_positions:
            # Feed everything before this slot that the cache has not seen yet, in one forward.
            fresh = x[:, fed:position].to(model.device)
            last_index = torch.tensor([fresh.shape[1] - 1], device=model.device)  # only its logits are read
            logits, cache = model.forward_cached(fresh, cache, logits_at=last_index)
            fed = position
            active = is_slot[:, position]
            for row in active.nonzero().squeeze(1).tolist():
                nfe[row] += 1
            last = logits[:, -1:].to(torch.float64)  # the prediction for ``position``
            last[..., model.mask_id] = float("-inf")
            sampled = gumbel_argmax(
                truncate(last, config.temperature, config.top_k, config.top_p), config.temperature, generator
            )
            probs = last.softmax(-1)
            chosen_prob = probs.gather(-1, sampled.unsqueeze(-1)).squeeze(-1)[:, 0]
            topk = probs[:, 0].topk(min(TOPK, probs.shape[-1]), dim=-1) if config.record_topk else None
            x[active, position] = sampled[active, 0].cpu()
            masked[active, position] = False
            step += 1
            for row in active.nonzero().squeeze(1).tolist():
                # One slot read and committed: its confidence and prob are the sampled token's probability.
                readings = {
                    "committed": [position],
                    "window": [position],
                    "confidence": chosen_prob[row : row + 1].cpu().numpy(),
                    "prob": chosen_prob[row : row + 1].cpu().numpy(),
                    "proposal": sampled[row].cpu().numpy(),
                }
                if topk is not None:
                    readings["topk_ids"] = topk.indices[row : row + 1].cpu().numpy()
                    readings["topk_probs"] = topk.values[row : row + 1].cpu().numpy()
                current[row] = state(row, step, readings)
            yield list(current)

    return run()


def decode_autoregressive(model, prompt: str, config: SamplerConfig) -> Iterator:
    """One prompt: yields the initial ``StepState``, then one per generated token."""
    states = decode_autoregressive_batch(model, [prompt], config)
    return (batch[0] for batch in states)
