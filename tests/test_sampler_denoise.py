"""The denoising loop: states, determinism, batching, guidance mechanics, end of text, re-masking."""

from dataclasses import replace

import numpy as np
import pytest
import torch

from dlm_core.models import ModelAdapter, tiny_random_model
from dlm_core.sampler import SamplerConfig, StepState, denoise, denoise_batch, run_to_end, tokens_per_forward

MODEL = tiny_random_model(seed=0)


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


class ScriptedModel(ModelAdapter):
    """Position i strongly prefers token script[i] (else token 0); records every input batch."""

    def __init__(self, script, max_length=64):
        base = tiny_random_model()
        self.name, self.kind, self.codec = "scripted", "diffusion", base.codec
        self.mask_id, self.eos_ids, self.max_length = base.mask_id, base.eos_ids, max_length
        self.vocab_size, self.device = base.vocab_size, torch.device("cpu")
        self.script = script
        self.calls = []

    def logits(self, input_ids, attention_mask=None):
        self.calls.append((input_ids.clone(), None if attention_mask is None else attention_mask.clone()))
        batch, length = input_ids.shape
        logits = torch.zeros(batch, length, self.vocab_size)
        for i in range(length):
            token = self.script[i] if i < len(self.script) else 0
            logits[:, i, token] = 10.0 - 0.1 * i  # earlier positions slightly more confident
        return logits


def test_initial_state_then_one_state_per_step():
    config = SamplerConfig(gen_length=12, steps=4, record_topk=True)
    states = list(denoise(MODEL, "Hello", config))
    assert [s.step for s in states] == [0, 1, 2, 3, 4]
    first, last = states[0], states[-1]
    assert first.nfe == 0 and first.committed.size == 0 and np.isnan(first.confidence).all()
    assert first.masked.sum() == 12 and (first.tokens[first.masked] == MODEL.mask_id).all()
    assert last.done and not last.masked.any() and last.nfe == 4
    assert first.prompt_length == 5 and first.fixed[:5].all() and not first.fixed[5:].any()
    assert [len(s.committed) for s in states[1:]] == [3, 3, 3, 3]
    assert all(s.elapsed >= 0 for s in states) and states[-1].elapsed >= states[1].elapsed
    assert last.topk_ids.shape == (17, 5) and last.topk_probs.shape == (17, 5)
    assert tokens_per_forward(last) == 3.0
    assert replace(run_to_end(MODEL, "Hello", config), elapsed=last.elapsed) == last


def test_state_arrays_are_read_only_and_snapshots_do_not_change():
    states = list(denoise(MODEL, "Hi", SamplerConfig(gen_length=6, steps=3)))
    with pytest.raises(ValueError):
        states[0].tokens[0] = 1
    assert states[0].masked.sum() == 6 and states[1].masked.sum() == 4  # the initial state kept its masks
    assert states[0] != states[1] and states[1] == states[1]
    with pytest.raises(TypeError):
        hash(states[0])


def test_confidence_prob_and_proposal_semantics():
    states = list(denoise(MODEL, "Hello", SamplerConfig(gen_length=8, steps=4)))
    step = states[2]
    before = states[1]
    scored = np.flatnonzero(~np.isnan(step.confidence))
    assert set(scored) == set(np.flatnonzero(before.masked))  # masked when the step began
    assert set(step.committed) <= set(scored)
    assert (step.proposal[scored] >= 0).all() and (step.proposal[step.fixed] == -1).all()
    assert (step.tokens[step.committed] == step.proposal[step.committed]).all()
    # low_confidence: confidence = probability of the proposal; committed ones are the most confident
    np.testing.assert_allclose(step.confidence[scored], step.prob[scored])
    assert step.confidence[step.committed].min() >= np.nanmax(np.where(step.masked, step.confidence, np.nan))
    assert np.isfinite(step.prob[~step.fixed]).all() and np.isnan(step.prob[step.fixed]).all()


def test_same_seed_same_trajectory_and_different_seeds_differ():
    config = SamplerConfig(gen_length=16, steps=8, block_length=8, temperature=1.0, remask="cap", eta=0.5, seed=7)
    first = list(denoise(MODEL, "Seeded", config))
    again = list(denoise(MODEL, "Seeded", config))
    assert [replace(s, elapsed=0.0) for s in first] == [replace(s, elapsed=0.0) for s in again]  # all but wall time
    other = list(denoise(MODEL, "Seeded", config.replace(seed=8)))
    assert [s.tokens.tolist() for s in first] != [s.tokens.tolist() for s in other]


def test_private_generator_leaves_the_global_rng_alone():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    run_to_end(MODEL, "rng", SamplerConfig(gen_length=8, steps=4, temperature=1.0, strategy="random"))
    assert torch.equal(torch.rand(3), expected)


def test_batch_matches_single_runs_at_temperature_zero():
    prompts = ["Short", "A longer prompt here", "Fill [MASK:3] in"]
    config = SamplerConfig(gen_length=8, steps=4, block_length=4)
    batch = list(denoise_batch(MODEL, prompts, config))
    assert all(len(states) == 3 for states in batch)
    for row, prompt in enumerate(prompts):
        single = run_to_end(MODEL, prompt, config)
        assert batch[-1][row].tokens.tolist() == single.tokens.tolist()
        assert batch[-1][row].nfe == single.nfe


def test_batch_uses_one_forward_per_step_with_padding_mask():
    model = ScriptedModel(list(range(1, 40)))
    config = SamplerConfig(gen_length=4, steps=2)
    batches = list(denoise_batch(model, ["ab", "abcdef"], config))
    assert len(model.calls) == 2 == len(batches) - 1
    ids, mask = model.calls[0]
    assert ids.shape == (2, 10) and mask is not None
    assert mask[0].tolist() == [True] * 6 + [False] * 4 and mask[1].all()
    assert [len(state.tokens) for state in batches[-1]] == [6, 10]


def test_finished_rows_leave_the_forward_and_repeat_their_final_state():
    # steps=None: one step per slot, so the 4-slot row finishes long before the 12-slot row
    model = ScriptedModel(list(range(1, 60)))
    batches = list(denoise_batch(model, ["[MASK:8] ab", "abc"], SamplerConfig(gen_length=4)))
    assert [ids.shape[0] for ids, _ in model.calls] == [2] * 4 + [1] * 8
    assert len(batches) == 13 and all(state.done for state in batches[-1])
    assert batches[-1][0].nfe == 12 and batches[-1][1].nfe == 4
    assert batches[12][1] is batches[4][1]


def test_cfg_runs_conditional_and_unconditional_in_one_call():
    model = ScriptedModel(list(range(1, 40)))
    config = SamplerConfig(gen_length=4, steps=2, cfg_scale=2.0)
    states = list(denoise(model, "ab[MASK]c", config))
    assert len(model.calls) == 2
    ids, _ = model.calls[0]
    prompt = model.encode("ab") + [model.mask_id] + model.encode("c")
    assert ids.shape[0] == 2
    assert ids[0, :4].tolist() == prompt
    assert ids[1, :4].tolist() == [model.mask_id] * 4  # unconditional: the prompt is hidden
    assert [s.nfe for s in states] == [0, 2, 4]  # a guided step costs 2 NFE


def test_answer_end_excludes_text_after_end_of_text():
    eos = MODEL.eos_ids[0]
    prompt_ids = MODEL.encode("ab")
    script = prompt_ids + MODEL.encode("xy") + [eos] + MODEL.encode("zz")
    model = ScriptedModel(script)
    final = run_to_end(model, "ab", SamplerConfig(gen_length=5, steps=5))
    assert final.tokens.tolist() == script
    assert final.answer_end == 4
    assert model.decode(final.answer_ids()) == "xy"
    assert model.decode(final.text_ids()) == "abxy"


def test_the_mask_token_is_never_proposed():
    script = [MODEL.mask_id] * 30  # a model that loves [MASK]
    final = run_to_end(ScriptedModel(script), "ab", SamplerConfig(gen_length=6, steps=3, temperature=0.0))
    assert final.done and (final.tokens != MODEL.mask_id).all()


def test_remasking_revises_tokens_and_still_finishes():
    config = SamplerConfig(gen_length=24, steps=16, temperature=1.0, remask="confidence", eta=0.5, seed=3)
    states = list(denoise(MODEL, "Revise", config))
    remasked = sum(len(s.remasked) for s in states)
    assert remasked > 0
    assert states[-1].done and len(states) - 1 == 16
    for previous, state in zip(states, states[1:], strict=False):
        assert previous.masked[state.committed].all()
        assert not previous.masked[state.remasked].any() and not state.fixed[state.remasked].any()
        assert state.masked[state.remasked].all()
        # the number of masks after a step follows the schedule whatever was re-masked
        assert previous.masked.sum() - state.masked.sum() == [2, 1][state.step > 8]
    assert len(states[-1].remasked) == 0


def test_remask_window_limits_when_tokens_are_revised():
    config = SamplerConfig(gen_length=24, steps=12, temperature=1.0, remask="cap", eta=1.0, remask_t_on=0.5, seed=1)
    states = list(denoise(MODEL, "Window", config))
    for previous, state in zip(states, states[1:], strict=False):
        if len(state.remasked):
            assert previous.masked[~previous.fixed].mean() <= 0.5
    assert sum(len(s.remasked) for s in states) > 0


def test_infilling_commits_only_slots():
    states = list(denoise(MODEL, "A [MASK:2] B [MASK] C", SamplerConfig(gen_length=0)))
    assert len(states) - 1 == 3  # one step per slot by default
    committed = sorted(int(p) for s in states for p in s.committed)
    assert committed == [2, 3, 7]
    assert all((s.tokens[s.fixed] == states[0].tokens[states[0].fixed]).all() for s in states)


def test_step_state_equality_handles_nan_and_none():
    state = run_to_end(MODEL, "eq", SamplerConfig(gen_length=4, steps=2))
    clone = StepState(**{f: getattr(state, f) for f in state.__dataclass_fields__})
    assert clone == state
    other = StepState(**{**{f: getattr(state, f) for f in state.__dataclass_fields__}, "nfe": 99})
    assert other != state


def test_non_finite_logits_are_reported():
    class Broken(ScriptedModel):
        def logits(self, input_ids, attention_mask=None):
            logits = super().logits(input_ids, attention_mask)
            logits[:, -1, 3] = float("nan")
            return logits

    with pytest.raises(FloatingPointError, match="step 1"):
        run_to_end(Broken([1] * 20), "ab", SamplerConfig(gen_length=4, steps=2))
