"""Unmasking strategies: which masked slots of the active block to commit at a step.

One registry, ``STRATEGIES``; adding a strategy means writing one function decorated with
``@strategy(name)`` and adding its rules to ``rules.STRATEGY_RULES`` (plain data, read by the config). A strategy sees a ``StepContext`` (torch tensors over the b batch rows
being decoded and the W slots of each row's active block) and returns a ``Selection``:

* ``confidence`` (b x W, float64): the strategy's score for each candidate's proposal x0 (higher =
  surer), ``-inf`` at non-candidates. This is what ``StepState.confidence`` reports.
* ``transfer`` (b x W, bool): candidates to commit now (their token becomes x0).

Shared definitions (computed once per step by ``denoise`` before the strategy runs):

* logits: the model's logits after classifier-free guidance, with the mask token removed (a masked
  LM is never trained to output [MASK]) and top-k / top-p truncation applied (-inf outside).
* x0: the proposal per slot. Temperature T = 0: argmax. T > 0: LLaDA's float64 Gumbel-max,
  ``argmax(exp(l - max l) / (-log U)^T)``, a sample from softmax(l / T); the shift by max l only
  avoids overflow and leaves the argmax unchanged.
* probs = softmax(logits): temperature-1 probabilities, as LLaDA and Fast-dLLM score confidence.
* tempered = softmax(logits / T) (= probs at T = 0): the distribution Dream samples from and scores.

Count rules (see ``schedule``): LLaDA strategies commit ``n // S + (j < n % S)`` at step j of a block
of n slots and S steps; Dream strategies commit ``floor(m (1 - s/t))`` of the m masked slots, with
(t, s) consecutive entries of ``linspace(1, eps, S + 1)``, and everything at the block's last step.
Ties in every top-k are broken by reading order (stable sort).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields
from functools import cached_property

import torch

from .config import SamplerConfig
from .rules import STRATEGY_RULES, StrategyRules
from .schedule import llada_count

NEG_INF = float("-inf")


@dataclass
class StepContext:
    """What a strategy may look at; b rows x W window slots (the active block of each row)."""

    logits: torch.Tensor  # b x W x V float64: guided, mask-free, truncated logits
    x0: torch.Tensor  # b x W long: proposals
    probs: torch.Tensor  # b x W x V float64: softmax(logits)
    candidates: torch.Tensor  # b x W bool: masked slots of the active block
    num_masked: torch.Tensor  # b long: candidates per row (>= 1)
    block_size: torch.Tensor  # b long: slots in the active block
    block_steps: torch.Tensor  # b long: steps budgeted for the active block
    step_in_block: torch.Tensor  # b long: j, 0-based step index inside the block
    t: torch.Tensor  # b float32: Dream timestep at the start of the step
    s: torch.Tensor  # b float32: Dream timestep at the end of the step
    generator: torch.Generator
    config: SamplerConfig

    @cached_property
    def tempered(self) -> torch.Tensor:
        """b x W x V float64 softmax(logits / T), = probs at T = 0 (computed only when asked for)."""
        temperature = self.config.temperature
        return self.probs if temperature == 0 else (self.logits / temperature).softmax(-1)

    def gather(self, table: torch.Tensor) -> torch.Tensor:
        """table[..., x0]: the probability (or any per-token value) of each proposal."""
        return table.gather(-1, self.x0.unsqueeze(-1)).squeeze(-1)

    def last_step(self) -> torch.Tensor:
        return self.step_in_block >= self.block_steps - 1

    def steps_left(self) -> torch.Tensor:
        return self.block_steps - self.step_in_block

    def uniform(self) -> torch.Tensor:
        """b x W float64 uniforms from the run's private generator (one draw per call)."""
        return torch.rand(self.candidates.shape, generator=self.generator, dtype=torch.float64, device=self.x0.device)


@dataclass
class Selection:
    confidence: torch.Tensor  # b x W float64, -inf at non-candidates
    transfer: torch.Tensor  # b x W bool


@dataclass(frozen=True, kw_only=True)
class StrategySpec(StrategyRules):
    """A registered strategy: its rules (``rules.StrategyRules``) and the function that applies it."""

    fn: Callable[[StepContext], Selection]

    @property
    def doc(self) -> str:
        return (self.fn.__doc__ or "").strip()


STRATEGIES: dict[str, StrategySpec] = {}


def strategy(name: str) -> Callable[[Callable[[StepContext], Selection]], Callable]:
    """Register ``fn`` under ``name`` with its rules from ``rules.STRATEGY_RULES``."""

    def register(fn: Callable[[StepContext], Selection]) -> Callable[[StepContext], Selection]:
        if name in STRATEGIES:
            raise ValueError(f"strategy {name!r} is registered twice")
        if name not in STRATEGY_RULES:
            raise ValueError(f"strategy {name!r} has no entry in rules.STRATEGY_RULES")
        rules = STRATEGY_RULES[name]
        STRATEGIES[name] = StrategySpec(**{f.name: getattr(rules, f.name) for f in fields(rules)}, fn=fn)
        return fn

    return register


# -- helpers ---------------------------------------------------------------------------------------


def masked_score(score: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
    """Score at candidates, -inf elsewhere."""
    return torch.where(candidates, score.to(torch.float64), torch.full_like(score, NEG_INF, dtype=torch.float64))


def top_k_mask(score: torch.Tensor, candidates: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Per row, the k[row] candidates with the highest score (ties: reading order). Vectorised."""
    score = score.to(torch.float64)
    finite_min = torch.finfo(torch.float64).min
    # Candidates rank above every non-candidate even if their own score is -inf.
    key = torch.where(candidates, score.clamp(min=finite_min), torch.full_like(score, NEG_INF))
    order = torch.sort(key, dim=1, descending=True, stable=True).indices
    positions = torch.arange(key.shape[1], device=key.device).expand_as(order)
    rank = torch.empty_like(order).scatter_(1, order, positions)
    return (rank < k.unsqueeze(1)) & candidates


def rank_select(ctx: StepContext, confidence: torch.Tensor, count: torch.Tensor) -> torch.Tensor:
    """The ``count`` slots to commit, by confidence (Dream's ``alg_temp``, here ``order_temperature``):
    ``ordered_top_k`` at the run's order temperature, its uniforms from the run's generator."""
    return ordered_top_k(confidence, ctx.candidates, count, ctx.config.order_temperature, ctx.uniform)


def ordered_top_k(
    confidence: torch.Tensor, candidates: torch.Tensor, count: torch.Tensor, tau: float,
    uniform: Callable[[], torch.Tensor],
) -> torch.Tensor:
    """The ``count`` candidates to commit, by ``confidence`` at order temperature ``tau``.

    tau = 0: the ``count`` most confident candidates (LLaDA, Dream's default). tau > 0: ``count``
    candidates drawn without replacement with probability proportional to exp(confidence / tau), as
    Dream's ``torch.multinomial(softmax(confidence / tau))``; drawn here as the top-``count`` of
    confidence / tau + Gumbel noise (Gumbel-top-k, the same distribution; Kool et al. 2019), from one
    float64 uniform per slot that ``uniform()`` draws (only when tau > 0). Small tau keeps the
    confident-first order but lets less sure slots through now and then, which breaks the loops a
    purely confident-first order falls into (a repeated phrase is the surest guess everywhere).
    """
    if tau == 0:
        return top_k_mask(confidence, candidates, count)
    gumbel = -torch.log(-torch.log(uniform().clamp(min=torch.finfo(torch.float64).tiny)))
    return top_k_mask(confidence / tau + gumbel, candidates, count)


def dream_count(ctx: StepContext) -> torch.Tensor:
    """Dream: ``int(m * (1 - s / t))`` masked slots (float32 as in Dream), all of them at the last step."""
    count = (ctx.num_masked.to(torch.float32) * (1 - ctx.s / ctx.t)).floor().long()
    return torch.where(ctx.last_step(), ctx.num_masked, count)


def minimum_rate(ctx: StepContext) -> torch.Tensor:
    """ceil(masked / steps left): the fewest commits that still finish the block within its budget."""
    return (ctx.num_masked + ctx.steps_left() - 1) // ctx.steps_left()


# -- LLaDA (Nie et al. 2025, "Large Language Diffusion Models", Algorithm 5 / generate.py) ----------


@strategy("low_confidence")
def low_confidence(ctx: StepContext) -> Selection:
    """LLaDA low-confidence remasking.

    confidence_i = p_theta(x0_i | x_t) = softmax(logits_i)[x0_i], the temperature-1 probability of the
    sampled token. Commit the k most confident masked slots of the block, k from LLaDA's
    ``get_num_transfer_tokens`` (n // S + (j < n % S)); the rest stay masked ("remasked").
    With ``order_temperature`` > 0 the k slots are drawn as in Dream's ``alg_temp`` (``rank_select``):
    our extension to LLaDA's rule, which has no such setting; 0 is LLaDA exactly.
    """
    confidence = masked_score(ctx.gather(ctx.probs), ctx.candidates)
    count = llada_count(ctx.block_size, ctx.block_steps, ctx.step_in_block)
    return Selection(confidence, rank_select(ctx, confidence, count))


@strategy("random")
def random_order(ctx: StepContext) -> Selection:
    """LLaDA random remasking: confidence_i ~ U(0, 1) i.i.d. (one float64 draw per window slot).

    Same count rule as ``low_confidence``; commits a uniformly random subset of the block's masks,
    the reverse process of the forward masking process in expectation.
    """
    confidence = masked_score(ctx.uniform(), ctx.candidates)
    count = llada_count(ctx.block_size, ctx.block_steps, ctx.step_in_block)
    return Selection(confidence, top_k_mask(confidence, ctx.candidates, count))


# -- Dream (Ye et al. 2025, "Dream 7B", generation_utils.py ``_sample``) ----------------------------


@strategy("maskgit_plus")
def maskgit_plus(ctx: StepContext) -> Selection:
    """Dream ``maskgit_plus`` (MaskGIT, Chang et al. 2022): confidence = tempered(x0), i.e. the max
    probability at T = 0, the probability of the sampled token at T > 0. Commit the
    ``floor(m (1 - s/t))`` most confident masked slots (all at the block's last step); Dream's
    ``alg_temp`` is ``order_temperature`` (``rank_select``), as for the two below.
    """
    confidence = masked_score(ctx.gather(ctx.tempered), ctx.candidates)
    return Selection(confidence, rank_select(ctx, confidence, dream_count(ctx)))


@strategy("topk_margin")
def topk_margin(ctx: StepContext) -> Selection:
    """Dream ``topk_margin`` (Kim et al. 2025): confidence = p_(1) - p_(2), the margin between the two
    most likely tokens of the tempered distribution. Dream's count rule.
    """
    top2 = ctx.tempered.topk(2, dim=-1).values
    confidence = masked_score(top2[..., 0] - top2[..., 1], ctx.candidates)
    return Selection(confidence, rank_select(ctx, confidence, dream_count(ctx)))


@strategy("entropy")
def entropy(ctx: StepContext) -> Selection:
    """Dream ``entropy``: confidence = -H(p) = sum_v p_v log(p_v + 1e-10) over the tempered
    distribution (<= 0; the least uncertain slots go first). Dream's count rule.
    """
    p = ctx.tempered
    confidence = masked_score((p * torch.log(p + 1e-10)).sum(-1), ctx.candidates)
    return Selection(confidence, rank_select(ctx, confidence, dream_count(ctx)))


@strategy("origin")
def origin(ctx: StepContext) -> Selection:
    """Dream ``origin`` (the MDLM/D3PM ancestral reverse step, Sahoo et al. 2024): each masked slot
    of the block unmasks independently with probability 1 - s/t (U < 1 - s/t, one float64 draw per
    window slot); the block's last step unmasks all. confidence = tempered(x0), for display only.
    Adaptive: a block that empties early ends early, so a run takes at most ``steps`` steps.
    """
    p_transfer = torch.where(ctx.last_step(), torch.ones_like(ctx.t), 1 - ctx.s / ctx.t).to(torch.float64)
    transfer = ctx.candidates & (ctx.uniform() < p_transfer.unsqueeze(1))
    return Selection(masked_score(ctx.gather(ctx.tempered), ctx.candidates), transfer)


# -- Fast-dLLM (Wu et al. 2025, "Fast-dLLM: Training-free Acceleration of Diffusion LLM") ----------


@strategy("threshold")
def threshold(ctx: StepContext) -> Selection:
    """Fast-dLLM confidence-aware parallel decoding: commit every masked slot of the block with
    confidence c_i = softmax(logits_i)[x0_i] > threshold, and always at least the single most
    confident one, so decoding never stalls.

    ``steps`` is the budget: each step also commits at least ceil(masked / steps left in the block)
    of the most confident slots, so a block never overruns its share. With steps = number of slots
    that floor is 1 and the rule is exactly Fast-dLLM's. Adaptive: at most ``steps`` steps.
    """
    confidence = masked_score(ctx.gather(ctx.probs), ctx.candidates)
    above = ctx.candidates & (confidence > ctx.config.threshold)
    return Selection(confidence, above | top_k_mask(confidence, ctx.candidates, minimum_rate(ctx)))


@strategy("factor")
def factor(ctx: StepContext) -> Selection:
    """Fast-dLLM factor-based parallel decoding: with c_(1) >= c_(2) >= ... the sorted confidences
    (softmax(logits)[x0]) of the block's masked slots, commit the n most confident for the largest n
    with (n + 1)(1 - c_(n)) < f (their bound (n+1) eps <= f on the error of parallel greedy decoding),
    and at least one. (n+1)(1 - c_(n)) grows with n, so the n satisfying it form a prefix.

    Same budget floor as ``threshold`` (ceil(masked / steps left)). Fast-dLLM's reference loop adds
    one extra token when the test first fails at the last candidate; that quirk is not reproduced.
    """
    confidence = masked_score(ctx.gather(ctx.probs), ctx.candidates)
    ordered = confidence.sort(dim=1, descending=True).values
    n = torch.arange(1, ordered.shape[1] + 1, device=ordered.device, dtype=torch.float64)
    largest_n = ((n + 1) * (1 - ordered) < ctx.config.factor).sum(1)  # -inf scores give +inf: never counted
    count = torch.maximum(largest_n, minimum_rate(ctx))
    return Selection(confidence, top_k_mask(confidence, ctx.candidates, count))


# -- EB-sampler (Ben-Hamu et al. 2025, "Accelerated Sampling from Masked Diffusion Models via ----------
#    Entropy Bounded Unmasking")


def token_entropy(probs: torch.Tensor) -> torch.Tensor:
    """H(p) = -sum_v p_v log p_v in nats over the last axis (0 log 0 = 0, so truncated tokens add 0)."""
    return torch.special.entr(probs).sum(-1)


def entropy_bound_count(entropy: torch.Tensor, candidates: torch.Tensor, gamma: float) -> torch.Tensor:
    """The EB-sampler's count: with H_(1) <= H_(2) <= ... the sorted entropies of a row's candidates,
    the largest k with sum_{i<=k} H_(i) - H_(k) <= gamma (the sum minus the largest accepted entropy).

    The left side is sum_{i<k} H_(i), computed as that exclusive cumulative sum: adding entropies
    >= 0 never decreases it, even in floating point, so the accepted slots form a prefix of the sorted
    order and k >= 1 for every gamma >= 0. (Writing it as cumsum - H_(k), as diffusers does, can
    cancel to 0 when a tiny entropy precedes a large one; see tests/test_sampler_reference.py.)
    Non-candidates sort last and are never counted.
    """
    key = torch.where(candidates, entropy, torch.full_like(entropy, float("inf")))
    ordered = key.sort(dim=1).values
    rank = torch.arange(ordered.shape[1], device=ordered.device)
    within = rank < candidates.sum(1, keepdim=True)
    ordered = torch.where(within, ordered, torch.zeros_like(ordered))  # keep the cumsum finite
    before = ordered.cumsum(1).roll(1, dims=1)  # sum_{i<k} H_(i): shift the cumulative sum right by one
    before[:, :1] = 0
    return (within & (before <= gamma)).sum(1)


@strategy("entropy_bound")
def entropy_bound(ctx: StepContext) -> Selection:
    """EB-sampler entropy-bounded unmasking: sort the block's masked slots by the entropy H_i of
    ``ctx.probs`` = softmax(logits_i) (temperature 1, after top-k / top-p truncation: the model's
    distribution, the paper's error proxy) and commit the k lowest-entropy ones, k the largest with
    sum_{i<=k} H_(i) - max_{i<=k} H_(i) <= gamma (``config.gamma``, nats), and at least one.
    The left side bounds the mutual information among the committed tokens, i.e. the error of
    drawing them independently in one step instead of one by one. gamma = 0 commits one slot per
    step (more only if several have entropy exactly 0); a large gamma commits the whole block. The
    default, 0.1, is diffusers' ``EntropyBoundScheduler``'s; ``benchmarks/frontier.py`` sweeps it.

    confidence = -H_i (higher = surer). Same budget floor as ``threshold`` (ceil(masked / steps
    left in the block)), so a block finishes within its share of ``steps``; with steps = number of
    slots that floor is 1 and the rule is exactly the paper's. Adaptive: at most ``steps`` steps.
    Ties in entropy are broken by reading order.
    """
    entropy = token_entropy(ctx.probs)
    confidence = masked_score(-entropy, ctx.candidates)
    count = torch.maximum(entropy_bound_count(entropy, ctx.candidates, ctx.config.gamma), minimum_rate(ctx))
    return Selection(confidence, top_k_mask(confidence, ctx.candidates, count))


# -- autoregressive order, for comparison ----------------------------------------------------------


@strategy("left_to_right")
def left_to_right(ctx: StepContext) -> Selection:
    """Autoregressive order: exactly one slot per step, the leftmost masked slot (reading order).

    confidence = softmax(logits)[x0]. Needs steps = number of generation slots. The only strategy for
    autoregressive adapters, whose prediction at a slot sees only the (fully committed) left context.
    """
    confidence = masked_score(ctx.gather(ctx.probs), ctx.candidates)
    first = ctx.candidates.long().argmax(dim=1, keepdim=True)  # index of the first True
    transfer = torch.zeros_like(ctx.candidates).scatter_(1, first, True) & ctx.candidates
    return Selection(confidence, transfer)
