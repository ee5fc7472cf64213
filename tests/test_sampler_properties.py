"""Property tests over random configurations: invariants every run must satisfy."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis_budget import examples

from dlm_core.models import tiny_random_model
from dlm_core.sampler import STRATEGIES, SamplerConfig, denoise, denoise_batch, encode_prompt, split_blocks

MODEL = tiny_random_model(seed=1)
AR_MODEL = tiny_random_model(seed=1, causal=True)
PROMPTS = ["Once upon", "a [MASK] b", "[MASK:3] end", "x [MASK:2] y [MASK] z", "Q: 1+1=?"]


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@st.composite
def runs(draw):
    prompt = draw(st.sampled_from(PROMPTS))
    placeholders = len(encode_prompt(MODEL, prompt, 0).slots) if "[MASK" in prompt else 0
    gen_length = draw(st.integers(0 if placeholders else 1, 10))
    num_slots = placeholders + gen_length
    strategy = draw(st.sampled_from(sorted(STRATEGIES)))
    block_length = draw(st.one_of(st.none(), st.integers(1, 6)))
    blocks = len(split_blocks(num_slots, block_length))
    if STRATEGIES[strategy].one_per_step:
        steps = draw(st.sampled_from([None, num_slots]))
    else:
        steps = draw(st.one_of(st.none(), st.integers(blocks, num_slots)))
        if steps is not None and gen_length and steps < -(-gen_length // (block_length or gen_length)):
            steps = None
    remask = None if not STRATEGIES[strategy].allows_remask else draw(st.sampled_from([None, "cap", "confidence"]))
    config = SamplerConfig(
        gen_length=gen_length,
        steps=steps,
        block_length=block_length,
        strategy=strategy,
        temperature=draw(st.sampled_from([0.0, 0.7, 1.5])),
        top_k=draw(st.sampled_from([None, None, 5])),
        top_p=draw(st.sampled_from([None, None, 0.9])),
        seed=draw(st.integers(0, 2**32)),
        threshold=draw(st.sampled_from([0.3, 0.9])),
        factor=draw(st.sampled_from([0.5, 2.0])),
        remask=remask,
        eta=draw(st.sampled_from([0.2, 1.0])),
        cfg_scale=draw(st.sampled_from([0.0, 0.0, 1.0])),
        record_topk=draw(st.booleans()),
    )
    return prompt, config, num_slots, blocks


def check_run(states, config, num_slots, mask_id):
    spec = STRATEGIES[config.strategy]
    budget = num_slots if config.steps is None else config.steps
    cost = 2 if config.cfg_scale > 0 else 1
    initial, final = states[0], states[-1]
    slots = np.flatnonzero(~initial.fixed)
    assert len(slots) == num_slots and initial.masked[slots].all()

    # no masks remain; masked positions hold the mask id, committed ones never do
    assert final.done
    for state in states:
        assert (state.tokens[state.masked] == mask_id).all()
        assert (state.tokens[~state.masked] != mask_id).all()
        # prompt / constraint tokens never change, and nothing but slots is ever scored
        assert (state.tokens[state.fixed] == initial.tokens[initial.fixed]).all()
        assert (state.fixed == initial.fixed).all()
        assert np.isnan(state.confidence[state.fixed]).all()

    # NFE = model steps (x2 under CFG); step counts honour the budget
    model_steps = len(states) - 1
    assert [s.nfe for s in states] == [cost * s.step for s in states]
    assert [s.step for s in states] == list(range(model_steps + 1))
    if spec.exact_steps:
        assert model_steps == budget
    else:
        assert 1 <= model_steps <= budget

    commits = [p for s in states[1:] for p in s.committed.tolist()]
    for previous, state in zip(states, states[1:], strict=False):
        assert previous.masked[state.committed].all()
        assert not previous.masked[state.remasked].any() and not state.fixed[state.remasked].any()
        assert not set(state.committed) & set(state.remasked)
        if config.strategy in ("low_confidence", "random", "left_to_right", "threshold", "factor"):
            assert len(state.committed) >= 1  # never stalls
    if config.remask is None:
        assert sorted(commits) == slots.tolist()  # every slot committed exactly once
        assert all(len(s.remasked) == 0 for s in states)
    if config.strategy == "left_to_right":
        assert commits == slots.tolist()  # strictly in reading order, one per step
        assert all(len(s.committed) == 1 for s in states[1:])
    # blocks are visited in order and each one is finished before the next starts
    blocks = [s.block for s in states[1:]]
    assert blocks == sorted(blocks)
    end = final.answer_end
    assert final.prompt_length <= end <= final.length
    if end < final.length:
        assert final.tokens[end] in MODEL.eos_ids


@settings(max_examples=examples(120), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(runs())
def test_invariants_hold_for_random_configs(run):
    prompt, config, num_slots, _ = run
    states = list(denoise(MODEL, prompt, config))
    check_run(states, config, num_slots, MODEL.mask_id)
    if config.record_topk:
        probs = states[-1].topk_probs
        finite = probs[np.isfinite(probs[:, 0])]
        assert (np.diff(finite, axis=1) <= 1e-12).all()  # sorted, most likely first


@settings(max_examples=examples(25), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(runs(), st.sampled_from(PROMPTS))
def test_invariants_hold_in_batches(run, other_prompt):
    prompt, config, num_slots, _ = run
    if config.gen_length == 0 and "[MASK" not in other_prompt:
        other_prompt = "a [MASK] b"  # a prompt without placeholders needs gen_length > 0
    other_slots = len(encode_prompt(MODEL, other_prompt, config.gen_length).slots)
    if (
        config.steps is not None
        and not len(split_blocks(other_slots, config.block_length)) <= config.steps <= other_slots
    ):
        config = config.replace(steps=None)
    if STRATEGIES[config.strategy].one_per_step:
        config = config.replace(steps=None)
    batches = list(denoise_batch(MODEL, [prompt, other_prompt], config))
    for row, slots in enumerate((num_slots, other_slots)):
        states = [batch[row] for batch in batches]
        # drop the repeats of a row that finished early
        unique = [s for i, s in enumerate(states) if i == 0 or s is not states[i - 1]]
        check_run(unique, config, slots, MODEL.mask_id)


@settings(max_examples=examples(15), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from([p for p in PROMPTS if not p.startswith("[MASK")]),  # AR needs a token before the first slot
    st.integers(1, 8),
    st.sampled_from([0.0, 1.0]),
    st.integers(0, 1000),
)
def test_autoregressive_left_to_right(prompt, gen_length, temperature, seed):
    config = SamplerConfig(gen_length=gen_length, strategy="left_to_right", temperature=temperature, seed=seed)
    states = list(denoise(AR_MODEL, prompt, config))
    num_slots = len(encode_prompt(AR_MODEL, prompt, gen_length).slots)
    check_run(states, config, num_slots, AR_MODEL.mask_id)
