"""The bridge (``dlm_core.models.bridge``) and the models that run their own sampler
(``dlm_core.models.external``), end to end on tiny random models built here from the stock classes.

* DiffusionGemma: ``DiffusionGemmaForBlockDiffusion`` + tokenizer with a chat template, through
  transformers' ``generate(streamer=...)`` and through diffusers' ``DiffusionGemmaPipeline`` with our
  callback; the recording of a pipeline run reproduces its final text exactly, early stop included.
* LLaDA 2.x: diffusers' ``LLaDA2Pipeline`` over a local stand-in with its conventions.
* Stop ends a run within one step; a source that raises gives a clear ``BridgeError``; settings the
  source does not have are refused naming the field; the runs record, save and replay.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from dlm_core.models.bridge import BridgeError, DraftRecorder, PipelineRecorder, StepRecorder
from dlm_core.models.external import DiffusionGemmaAdapter, LLaDA2Adapter
from dlm_core.models.spec import ModelSpec
from dlm_core.sampler import ConfigError, PromptError, SamplerConfig, denoise
from dlm_core.trajectory import Trajectory, TrajectoryBuilder
from tests import hub_fixtures

pytestmark = [pytest.mark.usefixtures("one_thread"), pytest.mark.filterwarnings("ignore::FutureWarning")]


@pytest.fixture(scope="module")
def gemma_folder(tmp_path_factory):
    return hub_fixtures.build_diffusion_gemma(tmp_path_factory.mktemp("diffusion-gemma"))


@pytest.fixture(scope="module")
def gemma(gemma_folder):
    from transformers import AutoTokenizer, DiffusionGemmaForBlockDiffusion

    model = DiffusionGemmaForBlockDiffusion.from_pretrained(gemma_folder).eval()
    return model, AutoTokenizer.from_pretrained(gemma_folder)


def gemma_spec(folder) -> ModelSpec:
    return ModelSpec(key="diffusion-gemma-tiny", display_name="DiffusionGemma (tiny)", repo_id=str(folder),
                     family="diffusion-gemma", description="tiny random test model")


def prompt_ids(tokenizer, text):
    return tokenizer.apply_chat_template([{"role": "user", "content": text}], add_generation_prompt=True,
                                         tokenize=True, return_dict=True)["input_ids"]


def check_states(states, uniform: bool, mask_id: int):
    """Steps in order, NFE never falls, masks only at slots, and in a uniform-state run every accepted
    or drafted position shows a real token (never the placeholder once a step has drawn it)."""
    for before, state in zip(states, states[1:], strict=False):
        assert state.step == before.step + 1 and state.nfe >= before.nfe
        assert not (state.masked & state.fixed).any()
        assert set(state.committed.tolist()) <= set(np.flatnonzero(before.masked & ~state.masked).tolist())
    final = states[-1]
    assert final.done


# -- transformers generate() with drafts ----------------------------------------------------------------


def test_generate_drafts_are_recorded_and_end_as_generate_does(gemma):
    model, tokenizer = gemma
    ids = prompt_ids(tokenizer, "hello world")
    states: list = []
    streamer = DraftRecorder(
        lambda p: StepRecorder(p, 16, mask_id=0, eos_ids=(1,), uniform=True, sink=states.append),
        model.config.canvas_length, takes_logits=True, entropy_bound=0.1,
    )
    with torch.random.fork_rng():
        torch.manual_seed(0)
        out = model.generate(torch.tensor([ids]), streamer=streamer, max_new_tokens=16)
    check_states(states, uniform=True, mask_id=0)
    assert states[-1].tokens[len(ids):].tolist() == out.sequences[0, len(ids):].tolist()
    assert streamer.block == 2 and streamer.ended
    drafted = [s for s in states[1:] if (s.masked & (s.tokens != 0)).any()]
    assert drafted, "a uniform-state run shows drafts at positions not accepted yet"
    steps = [s for s in states[1:] if s.nfe > states[s.step - 1].nfe]
    assert all(np.isfinite(s.confidence[s.prompt_length:]).any() for s in steps)  # -entropy per position


def test_generate_streamer_without_logits_records_plain_drafts(gemma):
    model, tokenizer = gemma
    ids = prompt_ids(tokenizer, "hi")
    states: list = []
    streamer = DraftRecorder(lambda p: StepRecorder(p, 8, mask_id=0, eos_ids=(1,), uniform=True, sink=states.append),
                             model.config.canvas_length, takes_logits=False)
    with torch.random.fork_rng():
        torch.manual_seed(1)
        out = model.generate(torch.tensor([ids]), streamer=streamer, max_new_tokens=8)
    assert all(s.masked[len(ids):].all() for s in states[1:-1])  # nothing known accepted until the canvas ends
    assert states[-1].tokens[len(ids):].tolist() == out.sequences[0, len(ids):].tolist()


def test_our_adapter_runs_generate_and_replays(gemma, gemma_folder):
    model, tokenizer = gemma
    adapter = DiffusionGemmaAdapter(model, tokenizer, gemma_spec(gemma_folder))
    config = SamplerConfig(gen_length=12, seed=3)
    states = list(denoise(adapter, "hello world", config))
    assert adapter.last_recorder.matched is True
    trajectory = TrajectoryBuilder(adapter, "hello world", config).extend(states).build()
    assert trajectory.noise == "uniform" and trajectory.source["engine"] == "transformers generate()"
    assert len(states[-1].tokens) == len(states[0].tokens) == len(prompt_ids(tokenizer, "hello world")) + 16
    again = Trajectory.from_json(trajectory.to_json())
    assert again == trajectory
    # the same seed gives the same run (generate() draws from the global RNG, seeded in a fork)
    assert [s.tokens.tolist() for s in denoise(adapter, "hello world", config)] == [s.tokens.tolist() for s in states]


# -- diffusers DiffusionGemmaPipeline with our callback ----------------------------------------------------


def record_pipeline(model, tokenizer, steps, confidence, stability, seed):
    """diffusers' DiffusionGemmaPipeline run with our callback: (recorder, output, callback, prompt ids)."""
    from diffusers import BlockRefinementScheduler, DiffusionGemmaPipeline

    from dlm_core.models.external import _accept_past_key_values

    _accept_past_key_values(model.model.decoder)
    pipe = DiffusionGemmaPipeline(model=model, scheduler=BlockRefinementScheduler(), processor=tokenizer)
    pipe.set_progress_bar_config(disable=True)
    ids = prompt_ids(tokenizer, "what is the capital of france?")
    recorder = StepRecorder(ids, 16, mask_id=0, eos_ids=(1,), uniform=True)
    callback = PipelineRecorder(recorder, "diffusion_gemma", block_length=model.config.canvas_length,
                                stability_threshold=stability, confidence_threshold=confidence)
    output = pipe(prompt="what is the capital of france?", gen_length=16, num_inference_steps=steps,
                  confidence_threshold=confidence, stability_threshold=stability, eos_early_stop=False,
                  generator=torch.Generator().manual_seed(seed), callback_on_step_end=callback,
                  callback_on_step_end_tensor_inputs=callback.tensor_inputs)
    return recorder, output, callback, ids


@pytest.mark.parametrize(
    ("steps", "confidence", "stability", "seed", "converge"),
    # all steps; the pipeline's defaults; a converged model that stops early (second step of each canvas)
    [(6, None, 1, 0, False), (5, 0.005, 1, 2, False), (6, 0.5, 1, 1, True)],
)
def test_pipeline_recording_reproduces_the_final_text_exactly(gemma, steps, confidence, stability, seed, converge):
    model, tokenizer = gemma
    if converge:
        with converged(model):
            recorder, output, callback, ids = record_pipeline(model, tokenizer, steps, confidence, stability, seed)
    else:
        recorder, output, callback, ids = record_pipeline(model, tokenizer, steps, confidence, stability, seed)
    final = recorder.final
    assert final.done
    assert final.tokens[len(ids):].tolist() == output.sequences[0].tolist()
    ours = tokenizer.decode(final.tokens[len(ids):final.answer_end + 1].tolist(), skip_special_tokens=True)
    assert ours == output.texts[0]
    assert recorder.reconcile(output.sequences[0].tolist(), callback.block) is True
    if converge:
        assert recorder.block_steps == [2, 2], "stable after each canvas's second step and confident: it stops"
    elif confidence is None:
        assert recorder.block_steps == [steps, steps]


class converged:
    """The tiny model as if it had converged: a strong per-position preference is added to its logits,
    so its argmax settles and its mean entropy is low (the pipeline's adaptive stop can fire), while
    one position is not sure enough to be committed by then: the stop itself must commit it, so a
    recording that missed the stop would not end as the pipeline did."""

    def __init__(self, model):
        self.model = model

    def __enter__(self):
        original = self.model.forward
        vocab = self.model.config.get_text_config().vocab_size

        def forward(*args, **kwargs):
            output = original(*args, **kwargs)
            width = output.logits.shape[1]
            favourite = (torch.arange(width) * 7 + 11) % vocab
            boost = torch.full((width, 1), 40.0)
            boost[3] = 8.0  # one position stays below the scheduler's 0.95 commit threshold (p ~ 0.9)
            output.logits = output.logits + boost * torch.nn.functional.one_hot(favourite, vocab)
            return output

        self.model.forward = forward
        return self

    def __exit__(self, *exc):
        del self.model.forward


def test_our_adapter_runs_the_diffusers_pipeline(gemma, gemma_folder):
    model, tokenizer = gemma
    adapter = DiffusionGemmaAdapter(model, tokenizer, gemma_spec(gemma_folder), engine="diffusers")
    states = list(denoise(adapter, "hello", SamplerConfig(gen_length=8, steps=4, seed=5)))
    assert adapter.last_recorder.matched is True and states[-1].done


def test_a_draft_accepted_when_its_canvas_finishes_keeps_its_confidence(gemma, gemma_folder):
    """generate() appends its last draft when a canvas ends; the positions accepted only then are
    written by a bookkeeping step (no forward) that carries the probability of that draft, so the
    inspector says how sure the model was ("written at step 7 with 41% confidence"), never "?"."""
    from dlm_core.viz import RunView, inspector_html

    model, tokenizer = gemma
    adapter = DiffusionGemmaAdapter(model, tokenizer, gemma_spec(gemma_folder))
    config = SamplerConfig(gen_length=16, steps=3, seed=3)
    states = list(denoise(adapter, "hello", config))
    finishing = [(before, state) for before, state in zip(states[1:], states[2:], strict=False)
                 if state.nfe == before.nfe and state.committed.size]
    assert finishing  # canvases of 8 tokens in 3 steps: some drafts are accepted only at the end
    for before, state in finishing:
        drafted = before.tokens[state.committed] == state.tokens[state.committed]
        assert drafted.any()
        assert np.array_equal(state.prob[state.committed][drafted], before.prob[state.committed][drafted])
        assert not np.isnan(state.prob[state.committed][drafted]).any()
    view = RunView.for_model(adapter, "hello", config)
    for state in states:
        view.add(state)
    before, state = finishing[0]
    position = int(state.committed[before.tokens[state.committed] == state.tokens[state.committed]][0])
    text = inspector_html(view, view.last_step, position)
    assert f"written at step {state.step}, when the model was {100 * before.prob[position]:.0f}% sure of it" in text, text


# -- Stop, errors, bad input ------------------------------------------------------------------------------


class CountingForward:
    def __init__(self, model, fail_at: int | None = None):
        self.model, self.fail_at, self.calls = model, fail_at, 0
        self.original = model.forward

    def __enter__(self):
        def forward(*args, **kwargs):
            self.calls += 1
            if self.fail_at is not None and self.calls >= self.fail_at:
                raise RuntimeError("CUDA out of memory (simulated)")
            return self.original(*args, **kwargs)

        self.model.forward = forward
        return self

    def __exit__(self, *exc):
        del self.model.forward


@pytest.mark.parametrize("engine", ["transformers", "diffusers"])
def test_stop_ends_the_run_within_one_step(gemma, gemma_folder, engine):
    model, tokenizer = gemma
    adapter = DiffusionGemmaAdapter(model, tokenizer, gemma_spec(gemma_folder), engine=engine)
    with CountingForward(model) as counter:
        states = denoise(adapter, "hello", SamplerConfig(gen_length=32, steps=6))
        taken = [next(states) for _ in range(4)]  # the initial canvas and three steps
        calls_at_stop = counter.calls
        states.close()
        for thread in threading.enumerate():
            if thread.name.startswith("bridge-"):
                thread.join(timeout=10)
        assert counter.calls == calls_at_stop <= 4
    assert taken[-1].step == 3 and not any(t.name.startswith("bridge-") for t in threading.enumerate())


@pytest.mark.parametrize("engine", ["transformers", "diffusers"])
def test_a_source_that_raises_gives_a_clear_message(gemma, gemma_folder, engine):
    model, tokenizer = gemma
    adapter = DiffusionGemmaAdapter(model, tokenizer, gemma_spec(gemma_folder), engine=engine)
    with CountingForward(model, fail_at=3), pytest.raises(BridgeError) as error:
        list(denoise(adapter, "hello", SamplerConfig(gen_length=8, steps=6)))
    message = str(error.value)
    assert adapter.engine in message and "failed after step 2" in message and "out of memory" in message


@pytest.mark.parametrize(
    ("changes", "field"),
    [({"cfg_scale": 1.0}, "cfg_scale"), ({"cache": "prefix"}, "cache"), ({"remask": "cap"}, "remask"),
     ({"edit_threshold": 0.5}, "edit_threshold"), ({"block_length": 4}, "block_length"),
     ({"gen_length": 600}, "gen_length")],
)
def test_settings_diffusion_gemma_does_not_have_are_refused_by_name(gemma, gemma_folder, changes, field):
    model, tokenizer = gemma
    adapter = DiffusionGemmaAdapter(model, tokenizer, gemma_spec(gemma_folder))
    with CountingForward(model) as counter, pytest.raises(ConfigError) as error:
        denoise(adapter, "hello", SamplerConfig(**changes))
    assert error.value.field == field and field in str(error.value) and counter.calls == 0


def test_placeholders_are_refused_for_models_with_their_own_sampler(gemma, gemma_folder):
    model, tokenizer = gemma
    adapter = DiffusionGemmaAdapter(model, tokenizer, gemma_spec(gemma_folder))
    with pytest.raises(PromptError, match="placeholders"):
        denoise(adapter, "The [MASK] sat", SamplerConfig(gen_length=8))


# -- LLaDA 2.x through LLaDA2Pipeline --------------------------------------------------------------------


@pytest.fixture(scope="module")
def llada2(tmp_path_factory):
    from transformers import AutoModel, AutoTokenizer

    standin = hub_fixtures.build_llada2_standin(tmp_path_factory.mktemp("llada2"))
    model = AutoModel.from_pretrained(standin.folder, trust_remote_code=True).eval()
    tokenizer = AutoTokenizer.from_pretrained(standin.folder)
    spec = ModelSpec(key="llada2-standin", display_name="LLaDA2 stand-in", repo_id=str(standin.folder),
                     family="llada2", description="stand-in", eos_ids=(standin.eos_id,))
    return LLaDA2Adapter(model, tokenizer, spec), standin


def test_llada2_pipeline_runs_and_records_with_editing(llada2):
    adapter, standin = llada2
    assert adapter.mask_id == standin.mask_id
    config = SamplerConfig(gen_length=16, block_length=4, steps=4, threshold=0.9, edit_threshold=0.05, seed=0)
    states = list(denoise(adapter, "hello world", config))
    assert adapter.last_recorder.matched is True
    final = states[-1]
    assert final.tokens[: final.prompt_length].tolist() == adapter.prompt_ids("hello world")
    assert all((s.tokens[s.masked] == standin.mask_id).all() for s in states)  # mask-based: masks are masks
    trajectory = TrajectoryBuilder(adapter, "hello world", config).extend(states).build()
    assert trajectory.noise == "mask" and trajectory.source["editing_threshold"] == 0.05
    assert Trajectory.from_json(trajectory.to_json()) == trajectory


@pytest.mark.parametrize(("post", "max_post_steps"), [(None, 16), (1, 0), (5, 4)])
def test_llada2_edit_only_steps_map_to_the_pipelines_max_post_steps(llada2, post, max_post_steps):
    adapter, _ = llada2
    config = SamplerConfig(gen_length=8, block_length=4, steps=4, edit_threshold=0.05, edit_post_steps=post)
    assert adapter.settings(config)["max_post_steps"] == max_post_steps  # None: the pipeline's default


def test_llada2_steps_are_per_block_so_fewer_than_blocks_run(llada2):
    """12 blocks of 4 tokens with 2 steps each: our sampler's rule (at least one step per block, in
    total) is not LLaDA 2.x's, whose steps are per block in [1, block length]."""
    adapter, _ = llada2
    config = SamplerConfig(gen_length=48, block_length=4, steps=2, threshold=0.9, seed=0)
    states = list(denoise(adapter, "hello world", config))
    assert adapter.last_recorder.matched is True and states[-1].done
    trajectory = TrajectoryBuilder(adapter, "hello world", config).extend(states).build()
    assert trajectory.source["steps_per_block"] == 2 and trajectory.steps_per_block == 2
    assert max(trajectory.early_stop.block_steps) <= 2  # no editing: a block never takes more


@pytest.mark.parametrize(
    ("changes", "allowed"),
    [({"block_length": 4, "steps": 5}, "[1, 4]"), ({"gen_length": 40, "steps": 33}, "[1, 32]"),  # default block
     ({"block_length": 8, "gen_length": 6, "steps": 7}, "[1, 6]")],  # LLaDA2Pipeline: <= gen_length per block
)
def test_llada2_steps_beyond_a_block_are_refused_naming_field_and_range(llada2, changes, allowed):
    adapter, _ = llada2
    with CountingForward(adapter.model) as counter, pytest.raises(ConfigError) as error:
        denoise(adapter, "hello world", SamplerConfig(**{"gen_length": 16, **changes}))
    assert error.value.field == "steps" and f"steps must be an integer in {allowed}" in str(error.value)
    assert "per block" in str(error.value) and counter.calls == 0


# -- the registry entries: offline, memory, remote code, loading a local folder -----------------------------


@pytest.fixture
def empty_hub_cache(tmp_path, monkeypatch):
    from huggingface_hub import constants

    from dlm_core.models import hub

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(hub, "available_memory", lambda device: 1000 * 10**9)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return tmp_path


@pytest.mark.usefixtures("fresh_registry")
def test_diffusion_gemma_offline_fails_fast_with_download_instructions(empty_hub_cache):
    import time

    from dlm_core.models.registry import ModelUnavailableError, load_model

    start = time.monotonic()
    with pytest.raises(ModelUnavailableError) as error:
        load_model("diffusiongemma-26b-a4b-it", device="cpu")
    assert time.monotonic() - start < 3
    message = str(error.value)
    assert "google/diffusiongemma-26B-A4B-it" in message and "52.0 GB" in message
    assert "hf download google/diffusiongemma-26B-A4B-it --revision main" in message and "offline mode" in message


@pytest.mark.usefixtures("fresh_registry")
def test_diffusion_gemma_is_refused_with_a_memory_estimate_where_it_cannot_fit(monkeypatch):
    from dlm_core.models import hub
    from dlm_core.models.registry import ModelTooLargeError, load_model

    monkeypatch.setattr(hub, "available_memory", lambda device: 24 * 10**9)  # a 24 GB GPU
    with pytest.raises(ModelTooLargeError) as error:
        load_model("diffusiongemma-26b-a4b-it", device="cuda")
    assert "61.9 GB of GPU memory" in str(error.value) and "25.80B parameters x 2 bytes (bfloat16)" in str(error.value)


@pytest.mark.usefixtures("fresh_registry")
def test_llada2_1_mini_is_listed_but_refused_until_its_commit_is_pinned(empty_hub_cache):
    from dlm_core.models.registry import ModelRefusedError, load_model

    with pytest.raises(ModelRefusedError, match="inclusionAI/LLaDA2.1-mini runs remote code.*TRUSTED_REMOTE_CODE"):
        load_model("llada2.1-mini", device="cpu")


@pytest.mark.usefixtures("fresh_registry")
def test_a_local_diffusion_gemma_loads_through_the_hub_loader_and_runs(gemma_folder):
    from dlm_core.models import hub

    spec = gemma_spec(gemma_folder)
    adapter = hub.load_hub_model(spec, device="cpu", available_bytes=10**12)
    assert isinstance(adapter, DiffusionGemmaAdapter) and adapter.noise == "uniform"
    states = list(denoise(adapter, "hello", SamplerConfig(gen_length=8, seed=1)))
    assert states[-1].done and adapter.last_recorder.matched
    with pytest.raises(NotImplementedError, match="runs its own sampler"):
        adapter.logits(torch.zeros(1, 4, dtype=torch.long))


def test_a_recorded_run_is_one_call_of_the_hosts_wrapper(gemma, gemma_folder):
    """On ZeroGPU the loader sets ``wrap_run`` to ``spaces.GPU``: the whole run is one GPU call."""
    model, tokenizer = gemma
    adapter = DiffusionGemmaAdapter(model, tokenizer, gemma_spec(gemma_folder))
    calls = []

    def wrap(fn):
        def wrapped(*args):
            calls.append(threading.current_thread().name)
            return fn(*args)

        return wrapped

    adapter.wrap_run = wrap
    states = list(denoise(adapter, "hello", SamplerConfig(gen_length=8, steps=3)))
    assert states[-1].done and len(calls) == 1 and calls[0].startswith("bridge-")
