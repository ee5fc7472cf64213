"""Uniform-state decoding (``config.noise == "uniform"``, ``dlm_core.sampler.uniform``).

The reference loop below drives transformers' own DiffusionGemma pieces (``EntropyBoundSampler``,
``LinearTemperatureScheduleLogitsProcessor``, ``StableAndConfidentStoppingCriteria``) over the tiny
model, with our documented draws in our documented order (``uniform`` module docstring): the initial
canvas and each step's renoising from ``noise_ids``, each draft by float64 Gumbel-max. Our sampler
must reproduce it token for token, state for state.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers.models.diffusion_gemma.generation_diffusion_gemma import (
    EntropyBoundSampler,
    EntropyBoundSamplerConfig,
    LinearTemperatureScheduleLogitsProcessor,
    StableAndConfidentStoppingCriteria,
)

from dlm_core.models import tiny_random_model
from dlm_core.models.bridge import StepRecorder, entropy_bound_accepted
from dlm_core.sampler import (
    ConfigError,
    PromptError,
    SamplerConfig,
    denoise,
    denoise_batch,
    encode_prompt,
    entropy_bound_accept,
    noise_ids,
)
from dlm_core.state import RunInfo

MODEL = tiny_random_model(seed=0)
AR_MODEL = tiny_random_model(seed=0, causal=True)
PROMPT = "The quick brown fox"

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def uniform(**changes) -> SamplerConfig:
    settings = {"gen_length": 10, "noise": "uniform", "temperature": 0.8, "final_temperature": 0.4, "gamma": 0.6,
                "steps": 6, "seed": 3}
    return SamplerConfig(**{**settings, **changes})


# -- acceptance and renoising against transformers' EntropyBoundSampler ----------------------------------


@pytest.mark.parametrize("bound", [0.0, 0.1, 0.7, 3.0, 50.0])
@pytest.mark.parametrize("seed", range(4))
def test_acceptance_and_renoising_match_transformers_entropy_bound_sampler(bound, seed):
    generator = torch.Generator().manual_seed(seed)
    batch, length, vocab = 3, 17, 40
    logits = torch.randn((batch, length, vocab), generator=generator, dtype=torch.float64) * (1 + 4 * seed)
    current = torch.randint(vocab, (batch, length), generator=generator)
    denoiser = torch.randint(vocab, (batch, length), generator=generator)
    reference = EntropyBoundSampler(EntropyBoundSamplerConfig(entropy_bound=float(bound) or 1e-12), length, vocab, 8)
    accepted_canvas = reference.accept_canvas(current, denoiser, logits, cur_step=4)
    theirs = reference.accepted_token_mask
    probs = logits.softmax(-1)
    ours = entropy_bound_accept(torch.special.entr(probs).sum(-1), float(bound) or 1e-12)
    assert torch.equal(ours, theirs)
    assert torch.equal(torch.where(ours, denoiser, current), accepted_canvas)
    renoised = reference.renoise_canvas(accepted_canvas, cur_step=4)
    assert torch.equal(renoised[ours], accepted_canvas[ours])  # accepted slots are kept, the rest renoised
    # The bridge's numpy recomputation (for recorded DiffusionGemma runs) agrees as well.
    entropy = torch.special.entr(probs).sum(-1).numpy()
    for row in range(batch):
        assert np.array_equal(entropy_bound_accepted(entropy[row], float(bound) or 1e-12), ours[row].numpy())


def test_padding_is_never_accepted_and_does_not_shift_the_budget():
    entropy = torch.tensor([[0.5, 0.125, 0.25, 0.0, 0.0]], dtype=torch.float64)  # exact in binary
    valid = torch.tensor([[True, True, True, False, False]])
    assert entropy_bound_accept(entropy, 0.375, valid).tolist() == [[True, True, True, False, False]]
    assert entropy_bound_accept(entropy, 0.125, valid).tolist() == [[False, True, True, False, False]]
    assert entropy_bound_accept(entropy, 0.1, valid).tolist() == [[False, True, False, False, False]]


# -- the whole loop against a reference driven by transformers' pieces -------------------------------------


def reference_run(prompt, config, model=MODEL):
    """DiffusionGemma's denoising loop (generate()'s steps 1.c.i-iv) on one canvas, with transformers'
    own processor, sampler and stop; returns (per step: shown canvas, accepted mask), final canvas."""
    encoded = encode_prompt(model, prompt, config.gen_length)
    slots = torch.tensor(encoded.slots)
    x = torch.tensor([encoded.ids])
    generator = torch.Generator().manual_seed(config.seed)
    noise = noise_ids(model)
    length, steps = len(slots), config.steps or len(slots)
    x[0, slots] = noise[torch.randint(len(noise), (1, length), generator=generator)][0]
    t_min = config.temperature if config.final_temperature is None else config.final_temperature
    processor = LinearTemperatureScheduleLogitsProcessor(t_min=t_min, t_max=config.temperature, max_denoising_steps=steps)
    sampler = EntropyBoundSampler(EntropyBoundSamplerConfig(entropy_bound=config.gamma), length, model.vocab_size, steps)
    sampler.initialize_canvas = lambda batch, device: noise[torch.randint(len(noise), (batch, length), generator=generator)]
    stopper = (StableAndConfidentStoppingCriteria(config.stop_stability, config.stop_confidence)
               if config.stop_confidence is not None else None)
    history = []
    for cur_step in reversed(range(1, steps + 1)):
        logits = model.logits(x)[:, slots].to(torch.float64)
        logits[..., model.mask_id] = float("-inf")
        processed = processor(x, logits, cur_step)
        uniform = torch.rand(processed.shape, generator=generator, dtype=torch.float64)
        shifted = torch.exp(processed - processed.amax(-1, keepdim=True))
        denoiser = (shifted / -torch.log(uniform)).argmax(-1)
        current = x[:, slots]
        accepted_canvas = sampler.accept_canvas(current, denoiser, processed, cur_step)
        accepted = sampler.accepted_token_mask
        x[0, slots] = sampler.renoise_canvas(accepted_canvas, cur_step)[0]
        argmax = processed.argmax(-1)
        history.append((torch.where(accepted, denoiser, argmax)[0].tolist(), accepted[0].tolist()))
        if stopper is not None and bool(stopper(argmax, processed).all()):
            break
    return history, argmax[0].tolist(), encoded


@pytest.mark.parametrize(
    "changes",
    [{}, {"final_temperature": None}, {"gamma": 0.05, "steps": 9}, {"gamma": 2.0, "seed": 7},
     {"top_p": 1.0, "temperature": 1.3, "final_temperature": 0.0}],
)
def test_uniform_decoding_matches_the_transformers_driven_loop(changes):
    config = uniform(**changes)
    history, final, encoded = reference_run(PROMPT, config)
    states = list(denoise(MODEL, PROMPT, config))
    slots = list(encoded.slots)
    forward = [s for s in states[1:] if s.nfe > states[states.index(s) - 1].nfe]
    assert len(forward) == len(history) == config.steps
    for state, (shown, accepted) in zip(forward, history, strict=True):
        assert state.tokens[slots].tolist() == shown
        assert (~state.masked[slots]).tolist() == accepted
    assert states[-1].tokens[slots].tolist() == final and states[-1].done
    assert states[-1].tokens[: encoded.prompt_length].tolist() == list(encoded.ids[: encoded.prompt_length])


class SteadyModel:
    """The tiny model reading an all-[MASK] canvas whatever it is given: its predictions never change,
    so the argmax canvas is stable from the second step on."""

    def __init__(self):
        self.inner = MODEL

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def logits(self, ids, attention_mask=None):
        return self.inner.logits(torch.full_like(ids, MODEL.mask_id), attention_mask)


@pytest.mark.parametrize(("stability", "stop_after"), [(0, 1), (1, 2), (2, 3), (4, 5)])
def test_the_stable_and_confident_stop_ends_where_transformers_stops(stability, stop_after):
    # A threshold above the largest possible entropy: "confident" always holds, so stability decides.
    model = SteadyModel()
    config = uniform(steps=12, stop_confidence=10.0, stop_stability=stability)
    history, final, encoded = reference_run(PROMPT, config, model)
    states = list(denoise(model, PROMPT, config))
    assert states[-1].nfe == len(history) == stop_after
    assert states[-1].tokens[list(encoded.slots)].tolist() == final and states[-1].done
    # Not confident enough (below the smallest mean entropy it reaches): every step runs.
    assert list(denoise(model, PROMPT, config.replace(stop_confidence=1e-3)))[-1].nfe == 12


# -- states: the display's conventions for uniform runs ------------------------------------------------


def test_states_follow_the_step_recorder_conventions():
    """Fed the same acceptances and drafts, ``bridge.StepRecorder`` (which records DiffusionGemma) builds
    the same canvases, committed / renoised / edited positions as our run's states."""
    config = uniform(gen_length=12, steps=8, gamma=1.0)
    states = list(denoise(MODEL, PROMPT, config))
    prompt_length = states[0].prompt_length
    recorder = StepRecorder(states[0].tokens[:prompt_length].tolist(), 12, mask_id=MODEL.mask_id,
                            eos_ids=MODEL.eos_ids, uniform=True)
    assert states[0].masked[prompt_length:].all() and not np.isin(states[0].tokens[prompt_length:], MODEL.mask_id).any()
    kinds = set()
    for before, state in zip(states, states[1:], strict=False):
        slots = state.tokens[prompt_length:]
        theirs = recorder.record(0, prompt_length, slots, ~state.masked[prompt_length:], forward=state.nfe > before.nfe)
        for field in ("tokens", "masked", "committed", "remasked", "edited", "edited_from", "nfe"):
            assert np.array_equal(getattr(state, field), getattr(theirs, field)), (state.step, field)
        kinds |= {name for name in ("committed", "remasked", "edited") if getattr(state, name).size}
    assert kinds == {"committed", "remasked", "edited"}  # the run exercises every kind of change


def test_readings_at_slots_only_and_the_run_is_marked_uniform():
    config = uniform(record_topk=True)
    states = list(denoise(MODEL, PROMPT, config))
    step = states[1]
    slots = ~step.fixed
    assert np.isfinite(step.prob[slots]).all() and np.isnan(step.prob[~slots]).all()
    assert (step.confidence[slots] <= 0).all() and np.array_equal(step.proposal[slots], step.tokens[slots])
    assert (step.topk_ids[slots] >= 0).all()
    assert RunInfo.describe(MODEL, PROMPT, config)["noise"] == "uniform"
    assert RunInfo.describe(MODEL, PROMPT, config.replace(noise="mask", final_temperature=None))["noise"] == "mask"


def test_noise_never_holds_special_tokens_and_infills_placeholders():
    states = list(denoise(MODEL, "A [MASK:4] b", uniform(gen_length=3, steps=4)))
    slots = ~states[0].fixed
    assert slots.sum() == 7
    special = [MODEL.mask_id, *MODEL.eos_ids]
    assert not np.isin(states[0].tokens[slots], special).any()
    assert not np.isin(noise_ids(MODEL).numpy(), special).any() and len(noise_ids(MODEL)) == MODEL.vocab_size - 2
    assert states[-1].done and (states[-1].tokens[states[0].fixed] == states[0].tokens[states[0].fixed]).all()


def test_seeded_runs_repeat_and_leave_the_global_rng_alone():
    torch.manual_seed(0)
    before = torch.random.get_rng_state()
    first = [s.tokens.tolist() for s in denoise(MODEL, PROMPT, uniform())]
    assert torch.equal(torch.random.get_rng_state(), before)
    assert [s.tokens.tolist() for s in denoise(MODEL, PROMPT, uniform())] == first
    assert [s.tokens.tolist() for s in denoise(MODEL, PROMPT, uniform(seed=4))] != first


class CountingModel:
    """The tiny model, counting forward passes."""

    def __init__(self):
        self.inner, self.calls = MODEL, 0

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def logits(self, ids, attention_mask=None):
        self.calls += 1
        return self.inner.logits(ids, attention_mask)


def test_stop_ends_the_run_within_one_step_and_nothing_runs_before_the_first_state():
    model = CountingModel()
    states = denoise(model, PROMPT, uniform(steps=20))
    assert model.calls == 0
    next(states), next(states), next(states)
    states.close()
    assert model.calls == 2


def test_a_batch_decodes_every_prompt_and_repeats_finished_rows():
    prompts = ["a", "a much longer prompt [MASK:2] here"]
    batches = list(denoise_batch(MODEL, prompts, uniform(steps=None, gen_length=5)))
    finals = batches[-1]
    assert [f.done for f in finals] == [True, True]
    assert finals[0].nfe == 5 and finals[1].nfe == 7  # steps None = one per slot
    assert batches[-1][0] is batches[-2][0]  # the shorter row finished first and repeats


# -- settings --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "field", "words"),
    [
        ({"remask": "cap"}, "remask", "must be None with noise 'uniform'"),
        ({"edit_threshold": 0.5}, "edit_threshold", "must be None with noise 'uniform'"),
        ({"block_length": 4}, "block_length", "must be None with noise 'uniform'"),
        ({"cfg_scale": 1.0}, "cfg_scale", "must be 0.0 with noise 'uniform'"),
        ({"cache": "prefix"}, "cache", "must be None with noise 'uniform'"),
        ({"temperature": 0.0, "final_temperature": None}, "temperature", "in (0, 10] with noise 'uniform'"),
        ({"final_temperature": 0.9}, "final_temperature", "[0, temperature = 0.8]"),
        ({"noise": "mask"}, "final_temperature", "must be None with noise 'mask'"),
        ({"noise": "mask", "final_temperature": None, "stop_confidence": 0.1}, "stop_confidence", "noise 'mask'"),
        ({"noise": "gaussian"}, "noise", "one of mask, uniform"),
        ({"stop_confidence": 0.0}, "stop_confidence", "(0, 10]"),
        ({"stop_stability": 101}, "stop_stability", "[0, 100]"),
        ({"steps": 2048}, "steps", "[1, 2047] or None with noise 'uniform'"),
    ],
)
def test_bad_settings_name_the_field_and_range(changes, field, words):
    with pytest.raises(ConfigError) as error:
        uniform(**changes)
    assert error.value.field == field and words in str(error.value)


def test_model_and_prompt_errors_at_the_call():
    with pytest.raises(ConfigError) as error:
        denoise(AR_MODEL, PROMPT, uniform())
    assert error.value.field == "noise" and "diffusion model" in str(error.value)
    with pytest.raises(PromptError) as error:
        denoise(MODEL, "x" * 600, uniform())
    assert error.value.field == "prompt"
    with pytest.raises(PromptError):
        denoise(MODEL, PROMPT, uniform(gen_length=0))


def test_more_steps_than_slots_are_allowed_under_uniform_noise():
    states = list(denoise(MODEL, PROMPT, uniform(gen_length=3, steps=7)))
    assert states[-1].nfe == 7 and states[-1].done


def test_the_display_draws_our_uniform_run_as_drafts_that_settle():
    from dlm_core.viz import RunView, canvas_html
    from dlm_core.viz.canvas import status_line

    config = uniform(gen_length=12, steps=8, gamma=1.0)
    view = RunView.for_model(MODEL, PROMPT, config)
    for state in denoise(MODEL, PROMPT, config):
        view.add(state)
    first = canvas_html(view, 0)
    assert 'class="t d"' in first and 'class="t m' not in first  # random tokens shown as drafts, no masks
    assert "starts as noise" in status_line(view, view.frame(0))
    assert 'class="t d"' not in canvas_html(view, view.last_step)  # settled: every slot accepted


def test_a_uniform_run_is_recorded_and_replayed_state_for_state():
    from dlm_core.trajectory import Trajectory, record

    config = uniform(gen_length=12, steps=8, gamma=1.0, record_topk=True)
    trajectory = record(MODEL, "A [MASK:2] b", config)
    assert trajectory.noise == "uniform"
    replayed = Trajectory.from_json(trajectory.to_json())
    assert len(replayed.states) == len(trajectory.states)
    for ours, theirs in zip(trajectory.states, replayed.states, strict=True):
        assert ours == theirs, ours.step


def test_a_mask_trajectory_must_still_start_from_masks():
    from dlm_core.trajectory import Trajectory, TrajectoryError, record

    data = record(MODEL, "A b", SamplerConfig(gen_length=4)).to_dict()
    data["initial_tokens"][-1] = 5
    with pytest.raises(TrajectoryError) as error:
        Trajectory.from_dict(data)
    assert error.value.field == "initial_tokens"
    uniform_data = record(MODEL, "A b", uniform(gen_length=4, steps=2)).to_dict()
    uniform_data["initial_tokens"][-1] = 10_000  # not in the recorded vocabulary
    with pytest.raises(TrajectoryError) as error:
        Trajectory.from_dict(uniform_data)
    assert error.value.field == "initial_tokens"
