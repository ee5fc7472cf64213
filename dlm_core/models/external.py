"""Models that run their own sampler (DiffusionGemma, LLaDA 2.x), recorded through ``bridge``.

Our loop asks a ``ModelAdapter`` for logits; these models bring their own decoding loops (an
encoder-decoder block diffusion with self-conditioning; LLaDA 2.x's block refinement with editing),
so their adapters run that loop and record it instead: ``run_states(prompt, config)`` yields
``StepState``s like ``denoise`` (``sampler.denoise_batch`` hands such a model to it).

* ``DiffusionGemmaAdapter``: ``DiffusionGemmaForBlockDiffusion`` (stock transformers, no remote code).
  By default its own ``generate()`` (the model card's way), recorded by ``bridge.DraftRecorder``;
  ``engine="diffusers"`` runs diffusers' ``DiffusionGemmaPipeline`` with ``BlockRefinementScheduler``
  and ``bridge.PipelineRecorder`` instead. Uniform-state: ``noise = "uniform"``.
* ``LLaDA2Adapter``: diffusers' ``LLaDA2Pipeline`` (``BlockRefinementScheduler``, token editing) over
  the repository's remote-code model (allow-listed and pinned).

Our settings map onto theirs (``SamplerConfig`` -> source): ``gen_length`` -> ``max_new_tokens`` /
``gen_length``, ``steps`` -> denoising steps *per block* (None: the model's default; any number of blocks, LLaDA 2.x at
most the block length: ``steps_range``), ``gamma`` ->
DiffusionGemma's entropy bound when the strategy is ``entropy_bound``, ``temperature``,
``threshold``, ``block_length``, ``edit_threshold`` and ``edit_post_steps`` (n -> ``max_post_steps`` n - 1;
None: the pipeline's default) -> LLaDA 2.x's, ``seed`` -> the run's RNG.
Settings these samplers do not have are refused with ``ConfigError`` naming them (CFG, KV cache,
ReMDM re-masking, and editing or block length for DiffusionGemma), so a run never silently ignores
what was asked. The settings actually used are recorded in the trajectory's ``source``.

Randomness: DiffusionGemma's ``generate()`` draws from torch's global RNG; it runs inside
``torch.random.fork_rng`` seeded with ``config.seed``, so the global state is restored afterwards,
but two such runs at the same moment interleave their draws (our own sampler never uses the global
RNG). The diffusers pipelines take a private ``torch.Generator``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import torch

from ..state import StepState
from .base import HFCodec, ModelAdapter
from .bridge import DraftRecorder, PipelineRecorder, StepRecorder, pull_states

DEFAULT_DENOISING_STEPS = 48  # DiffusionGemmaPipeline's default; generate() reads the checkpoint's own


class ExternalConfigError(ValueError):
    """A setting the model's own sampler does not have (``field`` names it). ``sampler.denoise``
    raises it as a ``ConfigError``."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field, self.message = field, message


class ExternalAdapter(ModelAdapter):
    """A model decoded by its own sampler; ``run_states`` records it. No ``logits`` of its own."""

    kind = "diffusion"
    noise = "mask"
    engine = ""

    def checked(self, prompt: str, config) -> tuple[list[int], dict[str, Any]]:
        """The prompt's ids and the sampler's settings, after every check a run makes (``ExternalConfigError``)."""
        self.check(config)
        ids = self.prompt_ids(prompt)
        self.check_length(ids, config.gen_length)
        return ids, self.settings(config)

    def describe_source(self, config) -> dict[str, Any]:
        """What recorded the run: the repository and the settings its sampler ran with (``settings``)."""
        return {"model": self.spec.repo_id, **self.settings(config)}

    def logits(self, input_ids, attention_mask=None):
        raise NotImplementedError(
            f"{self.name} runs its own sampler ({self.engine}); it is recorded through run_states, not sampled by ours"
        )

    # -- what every run checks ---------------------------------------------------------------------

    UNSUPPORTED = ("cfg_scale", "cache", "remask")

    def check(self, config) -> None:
        if config.cfg_scale > 0:
            raise ExternalConfigError("cfg_scale", f"cfg_scale must be 0 for {self.name} (its sampler has no guidance)")
        if config.cache is not None:
            raise ExternalConfigError("cache", f"cache must be None for {self.name} (its sampler keeps its own cache)")
        if config.remask is not None:
            raise ExternalConfigError("remask", f"remask must be None for {self.name} (ReMDM is our sampler's)")
        allowed = self.steps_range(config)
        if config.steps is not None and allowed is not None and not allowed[0] <= config.steps <= allowed[1]:
            raise ExternalConfigError(
                "steps",
                f"steps must be an integer in [{allowed[0]}, {allowed[1]}] or None for {self.name}, whose steps "
                f"are per block ({self.steps_why(config)}), got {config.steps}",
            )

    def steps_range(self, config) -> tuple[int, int] | None:
        """The steps *per block* (canvas) this model's sampler can take, where narrower than the
        ``steps`` setting's own range (None: any it allows). Any number of blocks runs with any of
        them: our sampler's rule, at least one step per block in total, is not theirs."""
        return None

    def steps_why(self, config) -> str:
        return ""

    def prompt_ids(self, prompt: str) -> list[int]:
        if not isinstance(prompt, str) or not prompt.strip():
            raise ExternalConfigError("prompt", "prompt must contain at least one non-whitespace character")
        if "[MASK]" in prompt.upper():
            raise ExternalConfigError(
                "prompt", f"{self.name} writes after the prompt only; [MASK] placeholders need one of our models"
            )
        messages = [{"role": "user", "content": prompt}]
        ids = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=True)
        return [int(i) for i in ids["input_ids"]]

    def check_length(self, prompt_ids: list[int], gen_length: int) -> None:
        if gen_length < 1:
            raise ExternalConfigError("gen_length", f"gen_length must be >= 1 for {self.name}, got {gen_length}")
        if len(prompt_ids) + gen_length > self.max_length:
            raise ExternalConfigError(
                "gen_length",
                f"prompt ({len(prompt_ids)} tokens) + gen_length ({gen_length}) must be <= {self.max_length} for {self.name}",
            )

    def prepare_prompt(self, text: str) -> str:
        messages = [{"role": "user", "content": text}]
        return self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)

    def run_states(self, prompt: str, config) -> Iterator[StepState]:
        """Validate now (raises ``ExternalConfigError``), then yield the recorded states lazily."""
        run = self.prepare_run(prompt, config)
        return pull_states(self.hosting_wrap(run), self.engine)

    # Set by the hub loader to its host's wrapper (on ZeroGPU ``spaces.GPU``: the whole run inside one
    # GPU call); the identity elsewhere.
    wrap_run = None

    def hosting_wrap(self, run):
        return run if self.wrap_run is None else self.wrap_run(run)

    def prepare_run(self, prompt: str, config):  # pragma: no cover - abstract
        raise NotImplementedError

    STEPS_KEY = "steps_per_block"  # the key of ``settings(config)`` that plans the steps of one block

    def steps_per_block(self, config) -> int:
        """The most model steps the source spends on one block (canvas): ``RunInfo.steps_per_block``,
        against which a block finished in fewer steps counts as stopped early."""
        return int(self.settings(config)[self.STEPS_KEY])

    def recorder(self, prompt_ids, gen_length, sink, config) -> StepRecorder:
        recorder = StepRecorder(prompt_ids, gen_length, mask_id=self.mask_id, eos_ids=self.eos_ids,
                                uniform=self.noise == "uniform", sink=sink, record_topk=config.record_topk)
        self.last_recorder = recorder  # diagnostics (tests): ``matched`` says the recording ended as the source did
        return recorder


def _private_generator(seed: int, device) -> torch.Generator:
    return torch.Generator(device=device).manual_seed(int(seed))


class DiffusionGemmaAdapter(ExternalAdapter):
    """DiffusionGemma (``DiffusionGemmaForBlockDiffusion``): uniform-state block diffusion.

    No mask token: each canvas of ``canvas_length`` tokens starts as random tokens and is refined;
    each step accepts the lowest-entropy positions (``EntropyBoundSampler``) and renoises the rest,
    the temperature is annealed from t_max to t_min, the previous step's logits feed back
    (self-conditioning) and a canvas stops early once stable and confident. ``mask_id`` here is only
    the placeholder for positions no step has drawn yet (the pad token); the canvas shows drafts.
    """

    noise = "uniform"
    STEPS_KEY = "steps_per_canvas"

    def __init__(self, model, tokenizer, spec, device=None, engine: str = "transformers"):
        if engine not in ("transformers", "diffusers"):
            raise ValueError(f"engine must be 'transformers' or 'diffusers', got {engine!r}")
        self.model, self.tokenizer, self.spec = model.eval(), tokenizer, spec
        self.name = spec.display_name
        self.engine = "transformers generate()" if engine == "transformers" else "diffusers DiffusionGemmaPipeline"
        self._engine = engine
        self.codec = HFCodec(tokenizer)
        text = model.config.get_text_config()
        self.canvas_length = int(model.config.canvas_length)
        self.vocab_size = int(text.vocab_size)
        self.mask_id = int(tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0)
        eos = getattr(model.generation_config, "eos_token_id", None)
        eos = list(eos) if isinstance(eos, list | tuple) else [eos]
        self.eos_ids = tuple(dict.fromkeys(int(i) for i in [*eos, tokenizer.eos_token_id, *spec.eos_ids] if i is not None))
        self.max_length = int(min(spec.max_length or text.max_position_embeddings, text.max_position_embeddings))
        self.device = torch.device(device) if device is not None else next(model.parameters()).device

    def check(self, config) -> None:
        super().check(config)
        if config.edit_threshold is not None:
            raise ExternalConfigError("edit_threshold", f"edit_threshold must be None for {self.name} (no token editing)")
        if config.block_length is not None:
            raise ExternalConfigError(
                "block_length", f"block_length must be None for {self.name} (its canvas is {self.canvas_length} tokens)"
            )

    def settings(self, config) -> dict[str, Any]:
        """The DiffusionGemma settings a run uses, from ours and the checkpoint's generation config."""
        generation = self.model.generation_config
        sampler = getattr(generation, "sampler_config", None)
        bound = config.gamma if config.strategy == "entropy_bound" else getattr(sampler, "entropy_bound", 0.1)
        return {
            "engine": self.engine,
            "sampler": "EntropyBoundSampler" if self._engine == "transformers" else "BlockRefinementScheduler",
            "canvas_length": self.canvas_length,
            "steps_per_canvas": int(config.steps or generation.max_denoising_steps or DEFAULT_DENOISING_STEPS),
            "entropy_bound": float(bound),
            "t_min": float(generation.t_min if generation.t_min is not None else 0.4),
            "t_max": float(generation.t_max if generation.t_max is not None else 0.8),
            "stability_threshold": int(generation.stability_threshold if generation.stability_threshold is not None else 1),
            "confidence_threshold": float(
                generation.confidence_threshold if generation.confidence_threshold is not None else 0.005
            ),
            "seed": int(config.seed),
        }

    def prepare_run(self, prompt: str, config):
        ids, settings = self.checked(prompt, config)
        canvases = math.ceil(config.gen_length / self.canvas_length)
        gen_slots = canvases * self.canvas_length
        if len(ids) + gen_slots > self.max_length:
            raise ExternalConfigError(
                "gen_length", f"gen_length rounds up to {gen_slots} ({canvases} canvases), over {self.name}'s context"
            )
        if self._engine == "diffusers":
            return lambda sink: self._run_pipeline(ids, prompt, config, settings, gen_slots, sink)
        return lambda sink: self._run_generate(ids, config, settings, gen_slots, sink)

    def _run_generate(self, ids, config, settings, gen_slots, sink):
        from transformers.models.diffusion_gemma.generation_diffusion_gemma import EntropyBoundSamplerConfig

        streamer = DraftRecorder(
            lambda prompt_ids: self.recorder(prompt_ids, gen_slots, sink, config),
            self.canvas_length,
            takes_logits=True,
            entropy_bound=settings["entropy_bound"],
        )
        device = next(self.model.parameters()).device
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(settings["seed"])
            output = self.model.generate(
                torch.tensor([ids], device=device),
                streamer=streamer,
                max_new_tokens=config.gen_length,
                max_denoising_steps=settings["steps_per_canvas"],
                sampler_config=EntropyBoundSamplerConfig(entropy_bound=settings["entropy_bound"]),
                t_min=settings["t_min"],
                t_max=settings["t_max"],
                stability_threshold=settings["stability_threshold"],
                confidence_threshold=settings["confidence_threshold"],
            )
        sequences = output.sequences if hasattr(output, "sequences") else output
        streamer.recorder.reconcile(sequences[0, len(ids) :].tolist(), max(streamer.block - 1, 0))
        return streamer.recorder

    def _run_pipeline(self, ids, prompt, config, settings, gen_slots, sink):
        from diffusers import BlockRefinementScheduler, DiffusionGemmaPipeline

        _accept_past_key_values(self.model.model.decoder)
        pipe = DiffusionGemmaPipeline(model=self.model, scheduler=BlockRefinementScheduler(), processor=self.tokenizer)
        pipe.set_progress_bar_config(disable=True)
        recorder = self.recorder(ids, gen_slots, sink, config)
        callback = PipelineRecorder(
            recorder, "diffusion_gemma", block_length=self.canvas_length,
            stability_threshold=settings["stability_threshold"], confidence_threshold=settings["confidence_threshold"],
        )
        output = pipe(
            prompt=prompt,
            gen_length=config.gen_length,
            num_inference_steps=settings["steps_per_canvas"],
            temperature=config.temperature,
            stability_threshold=settings["stability_threshold"],
            confidence_threshold=settings["confidence_threshold"],
            generator=_private_generator(settings["seed"], next(self.model.parameters()).device),
            output_type="seq",
            callback_on_step_end=callback,
            callback_on_step_end_tensor_inputs=callback.tensor_inputs,
        )
        recorder.reconcile(output.sequences[0].tolist(), max(callback.block, 0))
        return recorder


def _accept_past_key_values(decoder) -> None:
    """Version shim: diffusers 0.42.1's ``DiffusionGemmaPipeline`` calls the decoder's
    ``create_diffusion_decoder_attention_mask(..., past_key_values=...)``, which transformers 5.24
    renamed to ``cache`` (its forward methods still accept the old name, this static method does
    not). On this model instance only, the old keyword is passed on as the new one."""
    original = type(decoder).create_diffusion_decoder_attention_mask
    if getattr(decoder, "_accepts_past_key_values", False):
        return

    def create_mask(*args, past_key_values=None, **kwargs):
        if past_key_values is not None:
            kwargs["cache"] = past_key_values
        return original(*args, **kwargs)

    decoder.create_diffusion_decoder_attention_mask = create_mask
    decoder._accepts_past_key_values = True


class LLaDA2Adapter(ExternalAdapter):
    """LLaDA 2.x (inclusionAI/LLaDA2.1-mini) through diffusers' ``LLaDA2Pipeline``.

    Mask-based block refinement: blocks of ``block_length`` aligned to absolute positions (the
    prompt's last block is completed first), each refined for ``steps`` steps committing tokens
    above ``threshold`` (at least the even share), and LLaDA 2.1's token editing: a committed token
    is replaced where the model's sample differs with probability > ``edit_threshold``, also for up
    to ``max_post_steps`` steps after the block's last mask. Mask id: the tokenizer's mask token.
    """

    MAX_POST_STEPS = 16  # LLaDA2Pipeline's default

    def __init__(self, model, tokenizer, spec, device=None):
        self.model, self.tokenizer, self.spec = model.eval(), tokenizer, spec
        self.name = spec.display_name
        self.engine = "diffusers LLaDA2Pipeline"
        self.codec = HFCodec(tokenizer)
        mask_id = tokenizer.mask_token_id if tokenizer.mask_token_id is not None else spec.mask_id
        if mask_id is None:
            raise ValueError(f"{self.name}: neither the tokenizer nor the registry names a mask token")
        self.mask_id = int(mask_id)
        self.eos_ids = tuple(dict.fromkeys(int(i) for i in [tokenizer.eos_token_id, *spec.eos_ids] if i is not None))
        config_limit = getattr(model.config, "max_position_embeddings", None) or spec.max_length or 4096
        self.max_length = int(min(spec.max_length or config_limit, config_limit))
        self.vocab_size = int(getattr(model.config, "vocab_size", len(tokenizer)))
        self.device = torch.device(device) if device is not None else next(model.parameters()).device
        self.block_length_default = 32

    def steps_range(self, config) -> tuple[int, int]:
        """[1, block length]: the scheduler commits at least block_length / steps tokens per step, so a
        block never needs more; and LLaDA2Pipeline takes at most gen_length steps per block."""
        block = int(config.block_length or self.block_length_default)
        return 1, max(min(block, config.gen_length), 1)

    def steps_why(self, config) -> str:
        block = int(config.block_length or self.block_length_default)
        why = f"at most one per token of a block of {block}"
        return why + (f" and of gen_length {config.gen_length}" if config.gen_length < block else "")

    def settings(self, config) -> dict[str, Any]:
        block = int(config.block_length or self.block_length_default)
        return {
            "engine": self.engine,
            "scheduler": "BlockRefinementScheduler",
            "block_length": block,
            "steps_per_block": int(config.steps or self.steps_range(config)[1]),
            "temperature": float(config.temperature),
            "threshold": float(config.threshold),
            "editing_threshold": None if config.edit_threshold is None else float(config.edit_threshold),
            # our edit_post_steps n = its max_post_steps n - 1 (its loop runs one post step more)
            "max_post_steps": self.MAX_POST_STEPS if config.edit_post_steps is None else config.edit_post_steps - 1,
            "seed": int(config.seed),
        }

    def prepare_run(self, prompt: str, config):
        ids, settings = self.checked(prompt, config)
        return lambda sink: self._run(ids, config, settings, sink)

    def _run(self, ids, config, settings, sink):
        from diffusers import BlockRefinementScheduler, LLaDA2Pipeline

        pipe = LLaDA2Pipeline(model=self.model, scheduler=BlockRefinementScheduler(), tokenizer=self.tokenizer)
        pipe.set_progress_bar_config(disable=True)
        recorder = self.recorder(ids, config.gen_length, sink, config)
        callback = PipelineRecorder(recorder, "llada2", block_length=settings["block_length"])
        device = next(self.model.parameters()).device
        output = pipe(
            input_ids=torch.tensor([ids], device=device),
            gen_length=config.gen_length,
            block_length=settings["block_length"],
            num_inference_steps=settings["steps_per_block"],
            temperature=settings["temperature"],
            sampling_method="auto",
            threshold=settings["threshold"],
            editing_threshold=settings["editing_threshold"],
            max_post_steps=settings["max_post_steps"],
            eos_early_stop=True,
            mask_token_id=self.mask_id,
            generator=_private_generator(settings["seed"], device),
            output_type="seq",
            callback_on_step_end=callback,
            callback_on_step_end_tensor_inputs=callback.tensor_inputs,
        )
        recorder.reconcile(output.sequences[0].tolist(), recorder.final.block)
        return recorder
