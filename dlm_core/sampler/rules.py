"""What the sampler and ``SamplerConfig`` must know about each unmasking strategy without running it.

One table, ``STRATEGY_RULES``, plain data and no torch, so the config can validate a strategy name
and its combinations (``order_temperature``, ``remask``, ``steps``) without loading the strategies'
tensor code. ``strategies.strategy(name)`` attaches each strategy's function to its rules here, and
refuses a function whose name has no rules (and a test refuses rules without a function).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class StrategyRules:
    """The rules ``denoise`` and ``SamplerConfig`` apply around a strategy.

    exact_steps: runs exactly the budgeted steps (else adaptive: at most ``steps``).
    one_per_step: commits exactly one slot per step (``steps`` must equal the number of slots).
    allows_remask: may be combined with ReMDM re-masking.
    autoregressive_ok: valid for ``model.kind == "autoregressive"`` (needs left context only).
    ranked: commits a number of slots ranked by confidence (``rank_select``), so
        ``config.order_temperature`` applies.
    """

    name: str
    exact_steps: bool = True
    one_per_step: bool = False
    allows_remask: bool = True
    autoregressive_ok: bool = False
    ranked: bool = False


STRATEGY_RULES: dict[str, StrategyRules] = {
    rules.name: rules
    for rules in (
        StrategyRules("low_confidence", ranked=True),
        StrategyRules("random"),
        StrategyRules("maskgit_plus", ranked=True),
        StrategyRules("topk_margin", ranked=True),
        StrategyRules("entropy", ranked=True),
        StrategyRules("origin", exact_steps=False),
        StrategyRules("threshold", exact_steps=False),
        StrategyRules("factor", exact_steps=False),
        StrategyRules("entropy_bound", exact_steps=False),
        StrategyRules("left_to_right", one_per_step=True, allows_remask=False, autoregressive_ok=True),
    )
}
