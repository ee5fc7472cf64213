"""Token editing (LLaDA 2.1, ``SamplerConfig.edit_threshold``), checked against diffusers.

* ``edit_positions`` against ``BlockRefinementScheduler.step``'s editing rule on the same logits;
* a whole run of our sampler against diffusers' ``LLaDA2Pipeline`` driving the same stand-in model
  (LLaDA 2.x conventions: a mask token, absolute-position blocks, ``model(x, attention_mask=...,
  position_ids=...).logits``), canvas for canvas, step for step, with edits happening;
* edits are recorded (``StepState.edited`` / ``edited_from``), survive the trajectory's JSON round
  trip, and a run without editing is exactly the run it was before.
"""

from __future__ import annotations

import string
from dataclasses import replace
from types import SimpleNamespace

import pytest
import torch

from dlm_core.models.base import CharCodec, ModelAdapter
from dlm_core.sampler import ConfigError, SamplerConfig, denoise, denoise_batch, edit_positions
from dlm_core.trajectory import Trajectory, TrajectoryBuilder

pytestmark = pytest.mark.usefixtures("one_thread")

ALPHABET = string.ascii_lowercase + "0123456789 ."  # 38 symbols + [MASK] + end of text = 40 tokens


class PrefixLM(torch.nn.Module):
    """A causal stand-in for LLaDA 2.x: position i reads only tokens 0..i (a decayed running sum of
    embeddings), so it gives the same logits whether it sees the whole canvas (our sampler) or the
    canvas up to the current block (``LLaDA2Pipeline``). Its own token weighs little against the
    context, so a token committed early is often contradicted once its left context fills in: edits
    happen. The mask token's logit is very low (our sampler sets it to -inf; diffusers does not)."""

    def __init__(self, vocab: int, mask_id: int, seed: int = 0, dim: int = 16):
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        def weights(*shape, scale=1.0):
            values = torch.randn(*shape, generator=generator, dtype=torch.float64) * scale
            return torch.nn.Parameter(values, requires_grad=False)  # parameters: diffusers finds the device

        self.embed, self.head, self.position = weights(vocab, dim), weights(dim, vocab, scale=1.5), weights(512, dim, scale=0.5)
        self.mask_id = mask_id

    @property
    def device(self):  # what diffusers reads to place the pipeline (transformers models have it)
        return self.embed.device

    def forward(self, input_ids, attention_mask=None, position_ids=None):
        e = self.embed[input_ids] * 0.3
        length = input_ids.shape[1]
        decay = 0.7 ** (torch.arange(length)[:, None] - torch.arange(length)[None, :]).clamp(min=0).double()
        mixed = torch.einsum("ij,bjd->bid", torch.tril(decay), e) + self.position[:length]
        logits = torch.tanh(mixed) @ self.head
        logits[..., self.mask_id] = -1e4
        return SimpleNamespace(logits=logits.float())


class PrefixAdapter(ModelAdapter):
    kind = "diffusion"

    def __init__(self, seed: int = 0):
        self.codec = CharCodec(ALPHABET)
        self.name = "prefix-standin"
        self.mask_id = self.codec.mask_id
        self.eos_ids = (self.codec.eos_id,)
        self.vocab_size = self.codec.vocab_size
        self.max_length = 256
        self.model = PrefixLM(self.vocab_size, self.mask_id, seed)

    def logits(self, input_ids, attention_mask=None):
        return self.model(input_ids).logits


# -- the rule on the same logits ---------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(5))
def test_edit_rule_matches_block_refinement_scheduler(seed):
    from diffusers import BlockRefinementScheduler

    generator = torch.Generator().manual_seed(seed)
    batch, width, vocab, mask_id = 3, 12, 30, 29
    logits = torch.randn(batch, width, vocab, generator=generator) * 3
    logits[..., mask_id] = -1e4
    sample = torch.randint(0, vocab - 1, (batch, width), generator=generator)
    active = torch.rand(batch, width, generator=generator) < 0.4
    sample[active] = mask_id
    tau = 0.3
    scheduler = BlockRefinementScheduler(block_length=width, editing_threshold=tau)
    scheduler.set_timesteps(4, block_length=width)
    theirs = scheduler.step(logits, 0, sample, mask_token_id=mask_id, temperature=0.0, threshold=2.0)
    probs = logits.double().masked_fill(torch.arange(vocab) == mask_id, float("-inf")).softmax(-1)
    where, new, prob = edit_positions(probs, sample, ~active, tau)
    assert bool(where.any()), "the logits must make edits happen, or this test checks nothing"
    assert torch.equal(where, theirs.editing_transfer_index)
    assert torch.equal(new[where], theirs.sampled_tokens[where])
    assert torch.allclose(prob, theirs.sampled_probs.double(), atol=1e-6)


def test_edit_rule_edits_at_exactly_tau_and_never_keeps_the_same_token():
    probs = torch.tensor([[[0.5, 0.25, 0.25], [0.5, 0.25, 0.25], [0.2, 0.3, 0.5]]], dtype=torch.float64)
    tokens = torch.tensor([[1, 0, 0]])
    where, new, _ = edit_positions(probs, tokens, torch.ones(1, 3, dtype=torch.bool), 0.5)
    # position 0: top 0 (p = 0.5 >= tau) differs from token 1 -> edit; position 1 already holds the top
    # token; position 2: top 2 with p = 0.5 -> edit.
    assert where.tolist() == [[True, False, True]] and new[where].tolist() == [0, 2]
    where, _, _ = edit_positions(probs, tokens, torch.tensor([[False, True, True]]), 0.5)
    assert where.tolist() == [[False, False, True]]  # not editable: left alone


# -- a whole run against diffusers' LLaDA2Pipeline ------------------------------------------------


def llada2_run(adapter, prompt_ids, gen_length, block_length, steps_per_block, tau, threshold=2.0, max_post_steps=16):
    """diffusers' LLaDA2Pipeline on the stand-in; the canvas after every step (via our callback).
    ``threshold`` 2.0: never by confidence alone, top-k by the even schedule, as LLaDA's low_confidence."""
    from diffusers import BlockRefinementScheduler, LLaDA2Pipeline

    pipe = LLaDA2Pipeline(model=adapter.model, scheduler=BlockRefinementScheduler(), tokenizer=None)
    pipe.set_progress_bar_config(disable=True)
    canvases = []

    def record(pipeline, step, timestep, kwargs):
        canvases.append(kwargs["block_x"][0].clone())
        return kwargs

    output = pipe(
        input_ids=torch.tensor([prompt_ids]),
        gen_length=gen_length,
        block_length=block_length,
        num_inference_steps=steps_per_block,
        temperature=0.0,
        sampling_method="greedy",
        threshold=threshold,
        editing_threshold=tau,
        max_post_steps=max_post_steps,
        eos_early_stop=False,
        mask_token_id=adapter.mask_id,
        output_type="seq",
        callback_on_step_end=record,
        callback_on_step_end_tensor_inputs=["block_x"],
    )
    return canvases, output.sequences[0].tolist()


@pytest.mark.parametrize(("seed", "tau"), [(0, 0.2), (1, 0.3), (2, 0.15)])
def test_editing_run_matches_llada2_pipeline_step_for_step(seed, tau):
    adapter = PrefixAdapter(seed)
    prompt = "the cat."  # 8 tokens: a multiple of the block length, so the blocks line up
    gen_length, block, per_block = 16, 4, 4
    config = SamplerConfig(
        gen_length=gen_length, block_length=block, steps=per_block * gen_length // block, edit_threshold=tau
    )
    states = list(denoise(adapter, prompt, config))
    prompt_ids = adapter.encode(prompt)
    canvases, sequence = llada2_run(adapter, prompt_ids, gen_length, block, per_block, tau)
    assert len(states) - 1 == len(canvases)
    for step, (state, theirs) in enumerate(zip(states[1:], canvases, strict=True), start=1):
        n = theirs.shape[0]
        assert state.tokens[:n].tolist() == theirs.tolist(), f"step {step} differs"
    assert states[-1].tokens[len(prompt_ids) :].tolist() == sequence
    edits = sum(len(state.edited) for state in states)
    assert edits > 0, "the stand-in must make edits happen, or this test checks nothing"


@pytest.mark.parametrize(("seed", "threshold", "tau", "post"), [(0, 0.2, 0.2, 4), (1, 0.3, 0.3, 2), (2, 0.1, 0.15, 1),
                                                           (3, 0.3, 0.1, 4)])
def test_edit_only_steps_match_llada2_pipeline_step_for_step(seed, threshold, tau, post):
    """``edit_post_steps`` = n against LLaDA2Pipeline's ``max_post_steps`` = n - 1 (its loop runs one
    post step more than the number it is given). Our ``threshold`` strategy with one step per token
    of a block commits as its scheduler does (above the threshold, at least the even share), so blocks
    finish early and both run their edit-only steps (diffusers runs them only then: see config)."""
    adapter = PrefixAdapter(seed)
    prompt, gen_length, block = "the cat.", 16, 4
    config = SamplerConfig(gen_length=gen_length, block_length=block, steps=gen_length, strategy="threshold",
                           threshold=threshold, edit_threshold=tau, edit_post_steps=post)
    states = list(denoise(adapter, prompt, config))
    prompt_ids = adapter.encode(prompt)
    canvases, sequence = llada2_run(adapter, prompt_ids, gen_length, block, block, tau, threshold, post - 1)
    assert len(states) - 1 == len(canvases)
    for step, (state, theirs) in enumerate(zip(states[1:], canvases, strict=True), start=1):
        assert state.tokens[: theirs.shape[0]].tolist() == theirs.tolist(), f"step {step} differs"
    assert states[-1].tokens[len(prompt_ids) :].tolist() == sequence
    # an edit-only step: its block had no mask left when it began
    edit_only = [s for s in states[1:] if not states[s.step - 1].masked[block_slots(s, block, len(prompt_ids))].any()]
    assert sum(len(s.edited) for s in edit_only) > 0, "edit-only steps must edit, or this test checks nothing"
    per_block = [sum(1 for s in edit_only if s.block == b) for b in range(gen_length // block)]
    assert all(1 <= n <= post for n in per_block), per_block
    assert max(s.nfe for s in states) == len(states) - 1  # every edit-only step is one forward pass


def block_slots(state, block, prompt_length):
    start = prompt_length + state.block * block
    return slice(start, start + block)


def test_edit_only_steps_off_is_the_run_it_was_and_batches_agree():
    """Without ``edit_post_steps`` nothing changes; with it, a batch whose rows finish their blocks at
    different steps (one row editing while the other still denoises) equals its rows run alone."""
    adapter = PrefixAdapter(1)
    base = SamplerConfig(gen_length=12, block_length=4, steps=12, strategy="threshold", threshold=0.5,
                         edit_threshold=0.2)
    plain = list(denoise(adapter, "the cat.", base))
    with_post = list(denoise(adapter, "the cat.", base.replace(edit_post_steps=3)))
    assert len(with_post) > len(plain)
    config = base.replace(edit_post_steps=3)
    prompts = ["the cat.", "xyz 9 ab"]  # as long as each other: no padding, so a row is bit-identical alone
    alone = [list(denoise(adapter, p, config)) for p in prompts]

    def edit_only(states, step):  # its block had no mask left when the step began
        return step < len(states) and not states[step - 1].masked[block_slots(states[step], 4, 8)].any()

    mixed = [t for t in range(1, min(map(len, alone))) if edit_only(alone[0], t) != edit_only(alone[1], t)]
    assert mixed, "one row must edit while the other denoises in some step, or this test checks less"
    batched = [[replace(s, elapsed=0.0) for s in batch] for batch in denoise_batch(adapter, prompts, config)]
    for row, states in enumerate(alone):
        states = [replace(s, elapsed=0.0) for s in states]  # all but wall time
        assert [batch[row] for batch in batched[: len(states)]] == states, row
        assert all(batch[row] == states[-1] for batch in batched[len(states) :])


@pytest.mark.parametrize(("changes", "allowed"), [({"edit_post_steps": 0}, "[1, 64]"), ({"edit_post_steps": 65}, "[1, 64]"),
                                                  ({"edit_post_steps": 2.5}, "[1, 64]")])
def test_edit_post_steps_out_of_range_names_the_field(changes, allowed):
    with pytest.raises(ConfigError) as error:
        SamplerConfig(edit_threshold=0.5, **changes)
    assert error.value.field == "edit_post_steps" and allowed in str(error.value)
    with pytest.raises(ConfigError, match="edit_threshold") as error:
        SamplerConfig(edit_post_steps=4)  # edit-only steps without editing
    assert error.value.field == "edit_post_steps"


def test_edits_are_recorded_with_the_old_token_and_survive_json():
    adapter = PrefixAdapter(0)
    config = SamplerConfig(gen_length=16, block_length=4, steps=16, edit_threshold=0.2)
    states = list(denoise(adapter, "the cat.", config))
    edited = [(state, position, old) for state in states for position, old in zip(state.edited, state.edited_from, strict=True)]
    assert edited
    for state, position, old in edited:
        before = states[state.step - 1]
        assert before.tokens[position] == old != state.tokens[position]
        assert not before.masked[position] and not state.masked[position]
        assert position not in state.committed and position not in state.remasked
    builder = TrajectoryBuilder(adapter, "the cat.", config)
    trajectory = builder.extend(states).build()
    assert trajectory.stats()["edited"] == len(edited)
    again = Trajectory.from_json(trajectory.to_json())
    assert again == trajectory
    assert [s.edited.tolist() for s in again.states] == [s.edited.tolist() for s in states]


def test_without_editing_the_run_is_unchanged():
    """τ = None takes no sub-step at all; a τ no probability reaches edits nothing either."""
    adapter = PrefixAdapter(1)
    base = SamplerConfig(gen_length=12, block_length=4, steps=6, temperature=0.7, seed=3)
    off = list(denoise(adapter, "the cat.", base))
    unreachable = list(denoise(adapter, "the cat.", base.replace(edit_threshold=1.0)))
    assert [s.tokens.tolist() for s in off] == [s.tokens.tolist() for s in unreachable]
    assert all(len(s.edited) == 0 for s in off + unreachable)


@pytest.mark.parametrize("bad", [0.0, -0.1, 1.5, float("nan"), "0.5", True])
def test_edit_threshold_out_of_range_names_the_field(bad):
    with pytest.raises(ConfigError) as error:
        SamplerConfig(edit_threshold=bad)
    assert error.value.field == "edit_threshold" and "(0, 1]" in str(error.value)


def test_edit_threshold_needs_a_strategy_that_may_revise():
    with pytest.raises(ConfigError, match="edit_threshold") as error:
        SamplerConfig(strategy="left_to_right", edit_threshold=0.5)
    assert error.value.field == "edit_threshold"


def test_json_edit_must_hit_a_written_token():
    from dlm_core.trajectory import TrajectoryError

    adapter = PrefixAdapter(0)
    config = SamplerConfig(gen_length=16, block_length=4, steps=16, edit_threshold=0.2)
    trajectory = TrajectoryBuilder(adapter, "the cat.", config).extend(denoise(adapter, "the cat.", config)).build()
    data = trajectory.to_dict()
    assert any(step.get("edited") for step in data["steps"])
    data["steps"][0]["edited"] = [data["slots"][-1]]  # the last slot is still masked at step 1
    data["steps"][0]["edited_ids"] = [0]
    with pytest.raises(TrajectoryError) as error:
        Trajectory.from_dict(data)
    assert error.value.field == "steps[0].edited"
