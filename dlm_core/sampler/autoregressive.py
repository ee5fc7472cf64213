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

import numpy as np
import torch

from .config import ConfigError, SamplerConfig
from .prompt import EncodedPrompt, PromptError, encode_prompt

TOPK = 5


def check_autoregressive(model, config: SamplerConfig, slot_counts: Sequence[int]) -> None:
    """The settings an autoregressive model can honour; ``ConfigError`` naming the field otherwise."""
    if config.strategy != "left_to_right":
        raise ConfigError("strategy", f"strategy must be left_to_right for autoregressive model {model.name!r}, got {config.strategy}")
    if config.cfg_scale > 0:
        raise ConfigError("cfg_scale", f"cfg_scale must be 0 for autoregressive model {model.name!r}, got {config.cfg_scale}")
    for slots in slot_counts:
        if config.steps is not None and config.steps != slots:
            raise ConfigError("steps", f"steps must equal the number of generation slots ({slots}) or be None, got {config.steps}")


def decode_autoregressive_batch(model, prompts: Sequence[str | EncodedPrompt], config: SamplerConfig) -> Iterator[list]:
    """KV-cached left-to-right decoding of several prompts in lockstep (one forward per step for all).

    Rows are right-padded; with causal attention, padding after a row's end is never attended by
    its real positions, so no attention mask is needed. Yields a list of ``StepState`` per step,
    starting with the initial canvases; a finished row repeats its final state.
    """
    from .denoise import StepState, gumbel_argmax, truncate

    if isinstance(prompts, str) or not isinstance(prompts, Sequence) or not prompts:
        raise PromptError("prompts", "prompts must be a non-empty list of strings")
    encoded = [encode_prompt(model, text, config.gen_length) for text in prompts]
    check_autoregressive(model, config, [len(e.slots) for e in encoded])
    if any(e.slots[0] == 0 for e in encoded):
        raise PromptError("prompt", "prompt must not start with [MASK] for an autoregressive model (nothing to predict it from)")
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
        eos = np.asarray(model.eos_ids, dtype=np.int64)
        generator = torch.Generator(device=model.device).manual_seed(config.seed)
        nfe = [0] * rows
        start = time.perf_counter()

        def state(row: int, step: int, position: int | None, confidence: float, topk) -> StepState:
            n = lengths[row]
            tokens = x[row, :n].numpy().copy()
            still = masked[row, :n].numpy().copy()
            scores = np.full(n, np.nan)
            proposal = np.full(n, -1, dtype=np.int64)
            topk_ids = np.full((n, TOPK), -1, dtype=np.int64) if config.record_topk else None
            topk_probs = np.full((n, TOPK), np.nan) if config.record_topk else None
            committed = np.zeros(0, dtype=np.int64)
            if position is not None:
                scores[position] = confidence
                proposal[position] = tokens[position]
                committed = np.array([position], dtype=np.int64)
                if topk is not None:
                    k = topk[0].shape[0]
                    topk_ids[position, :k], topk_probs[position, :k] = topk
            prompt_length = encoded[row].prompt_length
            ends = np.flatnonzero(np.isin(tokens[prompt_length:], eos) & ~still[prompt_length:])
            return StepState(
                step=step, block=0, tokens=tokens, masked=still, fixed=fixed_np[row], prompt_length=prompt_length,
                committed=committed, remasked=np.zeros(0, dtype=np.int64), confidence=scores, prob=scores.copy(),
                proposal=proposal, nfe=nfe[row], elapsed=time.perf_counter() - start,
                answer_end=int(prompt_length + ends[0]) if ends.size else n, topk_ids=topk_ids, topk_probs=topk_probs,
            )

        current = [state(row, 0, None, np.nan, None) for row in range(rows)]
        yield list(current)
        slot_positions = is_slot.any(0).nonzero().squeeze(1).tolist()
        cache, fed, step = None, 0, 0
        for position in slot_positions:
            # Feed everything before this slot that the cache has not seen yet, in one forward.
            logits, cache = model.forward_cached(x[:, fed:position].to(model.device), cache)
            fed = position
            active = is_slot[:, position]
            for row in active.nonzero().squeeze(1).tolist():
                nfe[row] += 1
            last = logits[:, -1:].to(torch.float64)  # the prediction for ``position``
            last[..., model.mask_id] = float("-inf")
            sampled = gumbel_argmax(truncate(last, config.temperature, config.top_k, config.top_p), config.temperature, generator)
            probs = last.softmax(-1)
            chosen_prob = probs.gather(-1, sampled.unsqueeze(-1)).squeeze(-1)[:, 0]
            topk = probs[:, 0].topk(min(TOPK, probs.shape[-1]), dim=-1) if config.record_topk else None
            x[active, position] = sampled[active, 0].cpu()
            masked[active, position] = False
            step += 1
            for row in active.nonzero().squeeze(1).tolist():
                row_topk = None if topk is None else (topk.indices[row].cpu().numpy(), topk.values[row].cpu().numpy())
                current[row] = state(row, step, position, float(chosen_prob[row]), row_topk)
            yield list(current)

    return run()


def decode_autoregressive(model, prompt: str, config: SamplerConfig) -> Iterator:
    """One prompt: yields the initial ``StepState``, then one per generated token."""
    states = decode_autoregressive_batch(model, [prompt], config)
    return (batch[0] for batch in states)
