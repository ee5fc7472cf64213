"""Adapters for CanvasLM models: the built-in Shakespeare pair in ``assets/`` and a tiny random model.

The tiny random model is what tests build in milliseconds: a two-layer bidirectional CanvasLM over a
character alphabet. Its output is noise, but it exercises every code path of the engine exactly as a
trained model would.
"""

from __future__ import annotations

import string
from pathlib import Path

import torch
from transformers import AutoModel, AutoTokenizer

from .base import CharCodec, HFCodec, ModelAdapter
from .canvas_lm import CanvasConfig, CanvasLM, register_auto_classes

ASSETS_DIR = Path(__file__).resolve().parents[2] / "assets"
# The order temperature (Dream's alg_temp, ``SamplerConfig.order_temperature``) to sample the
# built-in diffusion model with: the app's default and the evaluation's. Chosen by measurement
# (benchmarks/sampling_sweep.py, README "The built-in models"): purely confident-first decoding at
# temperature 1 loops on stock phrases; this much randomness in the order brings repeated 4-grams
# down to the level of real text.
BUILTIN_ORDER_TEMPERATURE = 0.2
TINY_ALPHABET = string.ascii_letters + string.digits + string.punctuation + " \n"


class CanvasAdapter(ModelAdapter):
    """A ``CanvasLM`` (bidirectional or causal) with its codec.

    For a causal model, ``logits`` keeps the model's own next-token alignment shifted by one so the
    interface contract holds: position i reads the prediction made at i - 1 (position 0 gets a
    uniform row, since nothing precedes it).
    """

    def __init__(self, model: CanvasLM, codec, name: str, mask_id: int, eos_ids: tuple[int, ...]):
        self.model = model.eval()
        self.codec = codec
        self.name = name
        self.kind = "autoregressive" if model.config.causal else "diffusion"
        self.mask_id = int(mask_id)
        self.eos_ids = tuple(int(i) for i in eos_ids)
        self.max_length = int(model.config.max_position_embeddings)
        self.vocab_size = int(model.config.vocab_size)
        self.device = next(model.parameters()).device

    @torch.no_grad()
    def logits(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        logits = self.model(input_ids.to(self.device), attention_mask=attention_mask).logits.float()
        if self.kind == "autoregressive":
            logits = torch.cat((torch.zeros_like(logits[:, :1]), logits[:, :-1]), dim=1)
        return logits


    supports_cache = True

    @torch.no_grad()
    def forward_cached(
        self,
        input_ids: torch.Tensor,
        cache: list | None = None,
        position_ids: torch.Tensor | None = None,
        logits_at: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, list]:
        """Raw (unshifted) float logits of ``input_ids`` attending to ``cache`` too, plus the new cache;
        with ``logits_at`` (1-D indices into ``input_ids``' positions) only the logits there.

        The cache holds every layer's keys/values of ``cache`` + ``input_ids`` (rotary applied), so
        callers can slice it: the AR decoder appends, the Fast-dLLM caches keep prefix / suffix.
        """
        output = self.model(
            input_ids.to(self.device), position_ids=position_ids, cache=cache, use_cache=True, logits_to_keep=logits_at
        )
        return output.logits.float(), output.cache


def tiny_random_model(seed: int = 0, causal: bool = False, max_length: int = 512) -> CanvasAdapter:
    """A 2-layer, 64-wide random CanvasLM over ``TINY_ALPHABET``; deterministic for a given seed."""
    codec = CharCodec(TINY_ALPHABET)
    config = CanvasConfig(
        vocab_size=codec.vocab_size,
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=128,
        max_position_embeddings=max_length,
        causal=causal,
        mask_token_id=codec.mask_id,
        eos_token_id=codec.eos_id,
        initializer_range=0.5,  # large init: peaky, varied distributions make decoding tests meaningful
    )
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        model = CanvasLM(config)
    finally:
        torch.random.set_rng_state(generator_state)
    name = "tiny-random (untrained, for tests)" if not causal else "tiny-random-ar (untrained, for tests)"
    return CanvasAdapter(model, codec, name, codec.mask_id, (codec.eos_id,))


def native_bf16(device: str | torch.device = "cpu") -> bool:
    """Whether ``device`` multiplies bfloat16 matrices natively: a GPU, or a CPU with AVX-512 BF16 or AMX
    (elsewhere torch emulates bf16 on CPU, slower than float32)."""
    if torch.device(device).type == "cuda":
        return True
    cpu = torch.cpu
    return bool(getattr(cpu, "_is_avx512_bf16_supported", lambda: False)() or getattr(cpu, "_is_amx_tile_supported", lambda: False)())


def serving_dtype(kind: str, device: str | torch.device = "cpu") -> torch.dtype:
    """The dtype a built-in model of ``kind`` decodes fastest in on ``device``.

    A diffusion pass feeds a whole block (32 tokens with the dual cache, the whole canvas at a cache
    refresh): compute-bound, so bfloat16 makes it cheaper wherever the hardware multiplies bf16 natively.
    An autoregressive step feeds one token: on CPU its time is per-operation overhead, which bf16 does
    not shrink (measured no faster), so AR stays float32 there. ``benchmarks/frontier.py --dtypes
    float32 bfloat16`` times both decoders in both dtypes and races the AR twin in its faster one
    (README, "Many tokens per pass"); models trained here are stored in float16 and trained in bf16
    autocast, so bf16 decoding stays within their training precision.
    """
    if torch.device(device).type == "cuda":
        return torch.bfloat16
    return torch.bfloat16 if kind == "diffusion" and native_bf16(device) else torch.float32


def load_canvas(
    path: str | Path, name: str | None = None, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32
) -> CanvasAdapter:
    """Load a built-in model folder (config.json, model.safetensors, tokenizer.json) via the Auto classes,
    in ``dtype`` (float32 unless asked: ``serving_dtype`` says when bfloat16 is faster)."""
    register_auto_classes()
    path = Path(path)
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"model folder {str(path)!r} has no config.json; train it with `python -m dlm_core.train`")
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModel.from_pretrained(path, dtype=dtype).to(device)
    codec = HFCodec(tokenizer)
    eos_ids = tuple(i for i in (tokenizer.eos_token_id,) if i is not None)
    return CanvasAdapter(model, codec, name or path.name, tokenizer.mask_token_id, eos_ids)
