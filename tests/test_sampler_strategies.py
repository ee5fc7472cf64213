"""Schedules and each strategy's selection rule on hand-made inputs."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis_budget import examples

from dlm_core.sampler import STRATEGIES, SamplerConfig, StepContext, allocate_steps, num_transfer_tokens, split_blocks
from dlm_core.sampler.loop import gumbel_argmax, remask_positions, truncate
from dlm_core.sampler.schedule import dream_timesteps, llada_count
from dlm_core.sampler.strategies import top_k_mask

# -- schedules ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("slots", "block_length", "sizes"),
    [(10, 4, [4, 4, 2]), (8, 4, [4, 4]), (5, None, [5]), (3, 8, [3]), (0, 4, [])],
)
def test_split_blocks(slots, block_length, sizes):
    assert split_blocks(slots, block_length) == sizes


@pytest.mark.parametrize(
    ("sizes", "steps", "expected"),
    [
        ([4, 4], 8, [4, 4]),
        ([8, 8, 8], 12, [4, 4, 4]),  # equal blocks: steps / K, as LLaDA
        ([8, 8, 8], 10, [4, 3, 3]),  # remainder to the first blocks
        ([4, 4, 2], 5, [2, 2, 1]),
        ([8, 8, 8, 1], 4, [1, 1, 1, 1]),
        ([8, 8, 8, 1], 25, [8, 8, 8, 1]),  # never more steps than slots in a block
        ([8, 8, 8, 1], 24, [8, 8, 7, 1]),
        ([3], 1, [1]),
    ],
)
def test_allocate_steps(sizes, steps, expected):
    assert allocate_steps(sizes, steps) == expected


def test_allocate_steps_rejects_impossible_budgets():
    with pytest.raises(ValueError):
        allocate_steps([4, 4], 1)
    with pytest.raises(ValueError):
        allocate_steps([4, 4], 9)


@settings(max_examples=examples(200), deadline=None)
@given(st.lists(st.integers(1, 40), min_size=1, max_size=8), st.data())
def test_allocate_steps_properties(sizes, data):
    steps = data.draw(st.integers(len(sizes), sum(sizes)))
    allocation = allocate_steps(sizes, steps)
    assert sum(allocation) == steps
    assert all(1 <= s <= n for s, n in zip(allocation, sizes, strict=True))
    # Proportional: a larger block never gets fewer steps than a smaller one
    pairs = list(zip(allocation, sizes, strict=True))
    assert all(s1 >= s2 for s1, n1 in pairs for s2, n2 in pairs if n1 > n2)


def test_num_transfer_tokens_is_llada_base_plus_remainder_first():
    assert num_transfer_tokens(10, 4) == [3, 3, 2, 2]
    assert num_transfer_tokens(8, 8) == [1] * 8
    assert num_transfer_tokens(7, 3) == [3, 2, 2]
    counts = llada_count(torch.tensor([10, 10, 7]), torch.tensor([4, 4, 3]), torch.tensor([1, 2, 0]))
    assert counts.tolist() == [3, 2, 3]


def test_dream_timesteps():
    ts = dream_timesteps(4, 1e-3)
    assert ts.dtype == torch.float32 and ts[0] == 1 and math.isclose(float(ts[-1]), 1e-3, rel_tol=1e-6)
    assert torch.equal(ts, torch.linspace(1, 1e-3, 5))


# -- hand-made step contexts -------------------------------------------------------------------------


def context(probabilities, *, strategy_config=None, step=0, steps=None, candidates=None, seed=0):
    """A one-row StepContext whose proposals are token 0 with the given probabilities (vocab of 2)."""
    p = torch.tensor(probabilities, dtype=torch.float64)
    probs = torch.stack([p, 1 - p], dim=-1).unsqueeze(0)
    width = len(probabilities)
    candidates = torch.ones(1, width, dtype=torch.bool) if candidates is None else torch.tensor([candidates])
    steps = width if steps is None else steps
    ts = dream_timesteps(steps, 1e-3)
    return StepContext(
        logits=probs.log(),
        x0=torch.zeros(1, width, dtype=torch.long),
        probs=probs,
        candidates=candidates,
        num_masked=candidates.sum(1),
        block_size=torch.tensor([width]),
        block_steps=torch.tensor([steps]),
        step_in_block=torch.tensor([step]),
        t=ts[step : step + 1],
        s=ts[step + 1 : step + 2],
        generator=torch.Generator().manual_seed(seed),
        config=strategy_config or SamplerConfig(),
    )


def chosen(name, ctx):
    selection = STRATEGIES[name].fn(ctx)
    assert not bool((selection.transfer & ~ctx.candidates).any()), "only masked candidates may be committed"
    return selection.transfer[0].nonzero().squeeze(1).tolist(), selection.confidence[0]


def test_low_confidence_commits_the_most_confident():
    picked, confidence = chosen("low_confidence", context([0.6, 0.9, 0.7, 0.95], steps=2))
    assert picked == [1, 3]  # 4 slots, 2 steps: 2 per step
    assert confidence.tolist() == pytest.approx([0.6, 0.9, 0.7, 0.95])


def test_non_candidates_get_minus_infinity_and_are_never_chosen():
    picked, confidence = chosen("low_confidence", context([0.6, 0.99, 0.7, 0.95], candidates=[True, False, True, True]))
    assert picked == [3] and confidence[1] == float("-inf")


def test_threshold_commits_all_above_and_at_least_one():
    config = SamplerConfig(strategy="threshold", threshold=0.9)
    picked, _ = chosen("threshold", context([0.99, 0.95, 0.9, 0.5], strategy_config=config))
    assert picked == [0, 1]  # strictly greater than the threshold
    picked, _ = chosen("threshold", context([0.3, 0.5, 0.2, 0.4], strategy_config=config))
    assert picked == [1]  # never stalls: the single most confident


def test_threshold_budget_floor_finishes_the_block_in_time():
    config = SamplerConfig(strategy="threshold", threshold=0.99)
    picked, _ = chosen("threshold", context([0.3, 0.5, 0.2, 0.4], strategy_config=config, steps=2))
    assert picked == [1, 3]  # ceil(4 masked / 2 steps left) = 2
    picked, _ = chosen("threshold", context([0.3, 0.5, 0.2, 0.4], strategy_config=config, steps=2, step=1))
    assert picked == [0, 1, 2, 3]  # last budgeted step: everything


def test_factor_rule_largest_n_with_bound():
    config = SamplerConfig(strategy="factor", factor=1.0)
    # sorted: 0.99, 0.95, 0.9, 0.5 -> (n+1)(1-c_n): 0.02, 0.15, 0.4, 2.5 -> n = 3
    picked, _ = chosen("factor", context([0.5, 0.9, 0.99, 0.95], strategy_config=config))
    assert picked == [1, 2, 3]
    config = SamplerConfig(strategy="factor", factor=0.3)  # 0.02, 0.15 < 0.3 <= 0.4 -> n = 2
    picked, _ = chosen("factor", context([0.5, 0.9, 0.99, 0.95], strategy_config=config))
    assert picked == [2, 3]
    picked, _ = chosen("factor", context([0.2, 0.3, 0.25], strategy_config=config))
    assert picked == [1]  # none satisfies the bound: still one


def test_left_to_right_takes_the_leftmost_mask():
    picked, _ = chosen("left_to_right", context([0.1, 0.99, 0.5], candidates=[False, True, True]))
    assert picked == [1]


def test_margin_and_entropy_scores():
    ctx = context([0.9, 0.6, 0.5])
    _, margin = chosen("topk_margin", ctx)
    assert margin.tolist() == pytest.approx([0.8, 0.2, 0.0])
    _, negative_entropy = chosen("entropy", ctx)
    expected = [p * math.log(p + 1e-10) + (1 - p) * math.log(1 - p + 1e-10) for p in (0.9, 0.6, 0.5)]
    assert negative_entropy.tolist() == pytest.approx(expected)
    assert max(negative_entropy.tolist()) == negative_entropy[0]  # lowest entropy ranks first


def test_dream_count_rule_and_last_step():
    # 8 masked, 4 steps: t, s = 1, 0.75025 -> floor(8 * 0.24975) = 1 (Dream's float32 arithmetic)
    ctx = context([0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2], steps=4)
    picked, _ = chosen("maskgit_plus", ctx)
    expected = int(8 * (1 - float(ctx.s[0]) / float(ctx.t[0])))
    assert len(picked) == expected == 1
    picked, _ = chosen("maskgit_plus", context([0.9, 0.8, 0.7, 0.6], steps=4, step=3))
    assert picked == [0, 1, 2, 3]


def test_origin_unmasks_with_probability_one_minus_s_over_t():
    ctx = context([0.5] * 4000, steps=4, step=1)  # p = 1 - s/t = 1 - 0.5005/0.75025 ~ 0.333
    picked, _ = chosen("origin", ctx)
    p = 1 - float(ctx.s[0]) / float(ctx.t[0])
    assert abs(len(picked) / 4000 - p) < 0.04
    picked, _ = chosen("origin", context([0.5] * 10, steps=4, step=3))
    assert len(picked) == 10


def test_random_strategy_is_seeded():
    a, _ = chosen("random", context([0.5] * 12, steps=3, seed=1))
    b, _ = chosen("random", context([0.5] * 12, steps=3, seed=1))
    c, _ = chosen("random", context([0.5] * 12, steps=3, seed=2))
    assert a == b and len(a) == 4 and a != c


def test_top_k_mask_variable_k_and_ties_in_reading_order():
    score = torch.tensor([[0.5, 0.5, 0.9, 0.1], [0.3, 0.2, 0.1, 0.0]], dtype=torch.float64)
    mask = top_k_mask(score, torch.ones_like(score, dtype=torch.bool), torch.tensor([2, 0]))
    assert mask.tolist() == [[True, False, True, False], [False] * 4]
    candidates = torch.tensor([[True, True, False, True]])
    assert top_k_mask(torch.full((1, 4), float("-inf")), candidates, torch.tensor([3])).tolist() == [
        [True, True, False, True]
    ]


def test_truncate_top_k_and_top_p():
    logits = torch.tensor([[[3.0, 2.0, 1.0, 0.0]]], dtype=torch.float64)
    kept = truncate(logits, 0.0, 2, None).isfinite()[0, 0].tolist()
    assert kept == [True, True, False, False]
    # probs ~ 0.64, 0.24, 0.09, 0.03: top_p 0.7 keeps the token that crosses 0.7
    assert truncate(logits, 0.0, None, 0.7).isfinite()[0, 0].tolist() == [True, True, False, False]
    assert truncate(logits, 0.0, None, 0.5).isfinite()[0, 0].tolist() == [True, False, False, False]
    assert truncate(logits, 0.0, None, None) is logits


def test_gumbel_argmax_samples_the_tempered_distribution():
    logits = torch.log(torch.tensor([0.7, 0.2, 0.1], dtype=torch.float64)).expand(20000, 3)
    draws = gumbel_argmax(logits, 1.0, torch.Generator().manual_seed(0))
    frequencies = torch.bincount(draws, minlength=3).double() / 20000
    assert torch.allclose(frequencies, torch.tensor([0.7, 0.2, 0.1], dtype=torch.float64), atol=0.02)
    assert bool((gumbel_argmax(logits, 0.0, torch.Generator()) == 0).all())
    huge = torch.tensor([[1000.0, 999.0]], dtype=torch.float64)  # exp would overflow without the shift
    assert gumbel_argmax(huge, 1.0, torch.Generator().manual_seed(0)).item() in (0, 1)


def test_remask_respects_budget_and_eligibility():
    config = SamplerConfig(remask="cap", eta=1.0)
    candidates = torch.tensor([[True, True, False, False, False, False]])
    committed = ~candidates
    transfer = torch.tensor([[True, False, False, False, False, False]])  # one mask will remain
    remask = remask_positions(
        config, candidates, transfer, committed, torch.ones(1, 6, dtype=torch.float64), torch.tensor([6]),
        torch.Generator().manual_seed(0),
    )  # fmt: skip
    assert int(remask.sum()) <= 1  # at most the number of masks left after the step
    assert not bool((remask & ~committed).any())
    last = torch.tensor([[True, True, False, False, False, False]])  # block's last step: no mask remains
    remask = remask_positions(
        config, candidates, last, committed, torch.ones(1, 6, dtype=torch.float64), torch.tensor([6]),
        torch.Generator().manual_seed(0),
    )  # fmt: skip
    assert not bool(remask.any())


def test_remask_confidence_prefers_low_confidence_tokens():
    config = SamplerConfig(remask="confidence", eta=0.5)
    width = 40
    candidates = torch.zeros(1, width, dtype=torch.bool)
    candidates[0, :20] = True
    committed = ~candidates
    transfer = torch.zeros_like(candidates)
    psi = torch.ones(1, width, dtype=torch.float64)
    psi[0, 20:25] = 0.0  # five committed tokens the model was unsure of
    hits = torch.zeros(width)
    generator = torch.Generator().manual_seed(0)
    for _ in range(200):
        hits += remask_positions(config, candidates, transfer, committed, psi, torch.tensor([width]), generator)[0]
    assert hits[20:25].mean() > 2 * hits[25:].mean()
    assert hits[:20].sum() == 0


@pytest.mark.slow  # 3000 seeded draws per case: the frequencies must match softmax(c / tau) to 0.03
@pytest.mark.parametrize(("name", "step"), [("low_confidence", 0), ("maskgit_plus", 1)])  # one commit each
def test_order_temperature_draws_slots_with_softmax_of_confidence_over_tau(name, step):
    """Dream's alg_temp: one commit drawn with probability softmax(confidence / tau) (Gumbel-top-k)."""
    probabilities, tau, draws = [0.2, 0.5, 0.8], 0.3, 3000
    config = SamplerConfig(strategy=name, order_temperature=tau)
    counts = [0, 0, 0]
    for seed in range(draws):
        picked, _ = chosen(name, context(probabilities, strategy_config=config, steps=3, step=step, seed=seed))
        assert len(picked) == 1
        counts[picked[0]] += 1
    expected = torch.tensor(probabilities).div(tau).softmax(0).tolist()
    assert [c / draws for c in counts] == pytest.approx(expected, abs=0.03)
    # Deterministic per seed, and a tiny tau is the plain most-confident-first rule.
    again = [chosen(name, context(probabilities, strategy_config=config, steps=3, step=step, seed=s))[0] for s in (7, 7)]
    assert again[0] == again[1]
    sharp = SamplerConfig(strategy=name, order_temperature=1e-4)
    assert chosen(name, context(probabilities, strategy_config=sharp, steps=3, step=step, seed=1))[0] == [2]


def test_order_temperature_keeps_the_count_and_the_candidates():
    config = SamplerConfig(order_temperature=0.5)
    for seed in range(50):
        picked, _ = chosen("low_confidence", context([0.6, 0.99, 0.7, 0.95, 0.1, 0.3], strategy_config=config, steps=3,
                                                     candidates=[True, False, True, True, True, True], seed=seed))
        assert len(picked) == 2 and 1 not in picked  # 5 masks, 3 steps: 2 now (LLaDA's count)


# -- entropy_bound (EB-sampler) ----------------------------------------------------------------------


def binary_entropy(p):
    return -(p * math.log(p) + (1 - p) * math.log(1 - p))


def test_entropy_bound_commits_the_lowest_entropy_prefix_within_gamma():
    probabilities = [0.6, 0.99, 0.9, 0.999, 0.8]
    h = {i: binary_entropy(p) for i, p in enumerate(probabilities)}  # ascending: 3, 1, 2, 4, 0
    # sum minus largest for k = 1..5: 0, h3, h3 + h1, h3 + h1 + h2, ...; gamma between the 3rd and 4th
    gamma = (h[3] + h[1] + h[2] + h[3] + h[1]) / 2
    config = SamplerConfig(strategy="entropy_bound", gamma=gamma)
    picked, confidence = chosen("entropy_bound", context(probabilities, strategy_config=config))
    assert picked == [1, 2, 3]
    assert confidence.tolist() == pytest.approx([-h[i] for i in range(5)])  # confidence = -H
    picked, _ = chosen("entropy_bound", context(probabilities, strategy_config=config.replace(gamma=0.0)))
    assert picked == [3]  # gamma 0: only the lowest entropy
    picked, _ = chosen("entropy_bound", context(probabilities, strategy_config=config.replace(gamma=1000.0)))
    assert picked == [0, 1, 2, 3, 4]
    picked, _ = chosen("entropy_bound", context(probabilities, strategy_config=config.replace(gamma=1000.0),
                                                candidates=[True, False, True, False, True]))
    assert picked == [0, 2, 4]  # only masked slots, however large gamma is


@settings(max_examples=examples(150), deadline=None)
@given(
    st.lists(st.floats(0.5, 1.0, allow_nan=False), min_size=1, max_size=12),
    st.floats(0, 20, allow_nan=False),
    st.floats(0, 20, allow_nan=False),
    st.data(),
)
def test_entropy_bound_at_least_one_and_monotone_in_gamma(probabilities, gamma_a, gamma_b, data):
    candidates = data.draw(st.lists(st.booleans(), min_size=len(probabilities), max_size=len(probabilities)))
    candidates[data.draw(st.integers(0, len(probabilities) - 1))] = True
    low, high = sorted((gamma_a, gamma_b))
    picks = []
    for gamma in (low, high):
        config = SamplerConfig(strategy="entropy_bound", gamma=gamma)
        picked, _ = chosen("entropy_bound", context(probabilities, strategy_config=config, candidates=candidates))
        assert len(picked) >= 1
        picks.append(set(picked))
    assert picks[0] <= picks[1]  # a larger bound never commits fewer (and keeps the earlier ones)
    # what is committed has entropy no higher than any candidate left masked
    entropy = [binary_entropy(p) if p < 1 else 0.0 for p in probabilities]
    left = [i for i, c in enumerate(candidates) if c and i not in picks[1]]
    assert all(entropy[i] <= entropy[j] + 1e-12 for i in picks[1] for j in left)


def test_entropy_bound_budget_floor_finishes_the_block_in_time():
    config = SamplerConfig(strategy="entropy_bound", gamma=0.0)
    probabilities = [0.6, 0.7, 0.8, 0.9]
    picked, _ = chosen("entropy_bound", context(probabilities, strategy_config=config, steps=2))
    assert picked == [2, 3]  # ceil(4 masked / 2 steps left) = 2, the two lowest entropies
    picked, _ = chosen("entropy_bound", context(probabilities, strategy_config=config, steps=2, step=1))
    assert picked == [0, 1, 2, 3]  # last budgeted step: everything


@pytest.mark.parametrize(("steps", "gamma"), [(None, 0.0), (None, 0.5), (4, 0.0), (6, 0.05), (8, 1000.0)])
def test_entropy_bound_run_finishes_every_block_within_its_budget(steps, gamma):
    from dlm_core.models import tiny_random_model
    from dlm_core.sampler import denoise

    config = SamplerConfig(gen_length=16, block_length=8, steps=steps, strategy="entropy_bound", gamma=gamma,
                           temperature=1.0, seed=3)
    states = list(denoise(tiny_random_model(seed=0), "To be", config))
    final = states[-1]
    assert not final.masked.any()
    assert len(states) - 1 <= (steps or 16)
    assert sum(len(state.committed) for state in states) == 16
    if gamma == 1000.0:
        assert len(states) - 1 == 2  # one step per block: everything at once
    if gamma == 0.0 and steps is None:
        assert len(states) - 1 == 16  # exactly one per step
