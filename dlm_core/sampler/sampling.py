"""Drawing a token from logits, shared by the diffusion loop and the autoregressive decoder.

``truncate``: top-p then top-k (Dream's order) on logits / T. ``gumbel_argmax``: LLaDA's float64
Gumbel-max, a sample from softmax(logits / T) that draws one uniform per token from the run's
private generator (so an independent implementation can reproduce it draw for draw).
"""

from __future__ import annotations

import numpy as np
import torch


def truncates(top_k: int | None, top_p: float | None) -> bool:
    """Whether ``truncate`` drops anything with these settings (top-k on, or top-p below 1)."""
    return top_k is not None or (top_p is not None and top_p < 1.0)


def truncate(logits: torch.Tensor, temperature: float, top_k: int | None, top_p: float | None) -> torch.Tensor:
    """Top-p then top-k (Dream's order) on logits / T (logits at T = 0); dropped tokens become -inf."""
    if not truncates(top_k, top_p):
        return logits
    scaled = logits / temperature if temperature > 0 else logits
    keep = torch.ones_like(logits, dtype=torch.bool)
    if top_p is not None and top_p < 1.0:
        keep &= nucleus(scaled, top_p)
    if top_k is not None and top_k < logits.shape[-1]:
        kth = scaled.masked_fill(~keep, float("-inf")).topk(top_k, dim=-1).values[..., -1:]
        keep &= scaled >= kth
    return logits.masked_fill(~keep, float("-inf"))


def nucleus(scaled: torch.Tensor, top_p: float) -> torch.Tensor:
    """The top-p set (Holtzman et al. 2020) of each row of ``scaled`` logits, as a bool mask: the most
    probable tokens up to and including the one whose cumulative probability first exceeds ``top_p``.

    Written as a threshold: with the probabilities sorted descending, the crossing token's probability
    is the smallest one kept, and every token at least that probable is in the set. This needs the
    sorted values but no permutation, so on CPU numpy's vectorised sort does it (torch's CPU sort of
    4,096 float64 logits per masked slot cost more than the built-in model's forward pass). It equals
    the sort-and-scatter form (Dream's, the previous one here) except that tokens tied exactly with the
    crossing token are all kept (the sort form keeps an arbitrary subset: ``torch.sort`` is unstable).
    """
    probs = scaled.softmax(-1)
    if probs.device.type == "cpu":
        ordered = torch.from_numpy(np.flip(np.sort(probs.numpy(), axis=-1), axis=-1).copy())
    else:
        ordered = probs.sort(dim=-1, descending=True).values
    crossing = (ordered.cumsum(-1) <= top_p).sum(-1, keepdim=True).clamp(max=probs.shape[-1] - 1)
    return probs >= ordered.gather(-1, crossing)


def gumbel_argmax(
    logits: torch.Tensor, temperature: float, generator: torch.Generator, where: torch.Tensor | None = None
) -> torch.Tensor:
    """Sample from softmax(logits / T) by LLaDA's float64 Gumbel-max: argmax exp(l) / (-log U)^T.

    ``logits`` must be float64. Shifting by the row max keeps exp() finite without moving the argmax.
    ``where`` (bool, logits' shape without the vocabulary): sample only those rows (others get the
    plain argmax); one uniform per token of every row is drawn all the same, so the RNG stream does
    not depend on ``where``.
    """
    if temperature == 0:
        return logits.argmax(-1)
    uniform = torch.rand(logits.shape, generator=generator, dtype=torch.float64, device=logits.device)
    if where is None:
        return _gumbel_max(logits, uniform, temperature)
    x0 = logits.argmax(-1)
    x0[where] = _gumbel_max(logits[where], uniform[where], temperature)
    return x0


def _gumbel_max(logits: torch.Tensor, uniform: torch.Tensor, temperature: float) -> torch.Tensor:
    shifted = torch.exp(logits - logits.amax(-1, keepdim=True))
    return (shifted / (-torch.log(uniform)) ** temperature).argmax(-1)
