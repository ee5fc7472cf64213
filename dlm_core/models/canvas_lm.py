"""CanvasLM: the compact transformer behind the built-in models.

One class serves both built-in models: the masked-diffusion model (``causal=False``, bidirectional
attention, trained with the LLaDA/MDLM objective) and its autoregressive twin (``causal=True``,
next-token loss). Same tokenizer, same sizes, same code path, so the race between them is fair.

Why our own class rather than a stock transformers architecture: the Fast-dLLM caches need to feed
a block of queries against an arbitrary set of cached keys/values (prefix, or prefix + suffix) with
explicit rotary positions and *no* causal mask, which stock causal-LM classes do not expose without
patching their mask logic. The class is a ``PreTrainedModel``; after ``register_auto_classes()``
(``load_canvas`` calls it) ``AutoModelForMaskedLM.from_pretrained("assets/<name>")`` works.

Architecture (nanoGPT/LLaMA style): token embedding, pre-norm blocks of RMSNorm -> multi-head
attention with rotary position embeddings -> RMSNorm -> SwiGLU MLP, final RMSNorm, tied output head.
Rotary matters for the bidirectional model: with learned absolute positions the masked-diffusion
loss stayed at the unigram level for millions of tokens (measured in the pilot, see issue 7).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PretrainedConfig, PreTrainedModel

MODEL_TYPE = "diffusion-canvas"

# A per-layer (key, value) pair, each batch x heads x cached_length x head_dim, rotary already applied.
LayerCache = tuple[torch.Tensor, torch.Tensor]


class CanvasConfig(PretrainedConfig):
    model_type = MODEL_TYPE

    def __init__(
        self,
        vocab_size: int = 4096,
        hidden_size: int = 256,
        num_hidden_layers: int = 6,
        num_attention_heads: int = 4,
        intermediate_size: int = 704,
        max_position_embeddings: int = 640,
        rope_theta: float = 10000.0,
        rms_norm_eps: float = 1e-5,
        causal: bool = False,
        mask_token_id: int | None = None,
        eos_token_id: int | None = None,
        pad_token_id: int | None = None,
        initializer_range: float = 0.02,
        tie_word_embeddings: bool = True,
        **kwargs,
    ):
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.num_hidden_layers = num_hidden_layers
        self.num_attention_heads = num_attention_heads
        self.intermediate_size = intermediate_size
        self.max_position_embeddings = max_position_embeddings
        self.rope_theta = rope_theta
        self.rms_norm_eps = rms_norm_eps
        self.causal = causal
        self.mask_token_id = mask_token_id
        self.initializer_range = initializer_range
        super().__init__(
            eos_token_id=eos_token_id,
            pad_token_id=pad_token_id,
            tie_word_embeddings=tie_word_embeddings,
            **kwargs,
        )


@dataclass
class CanvasOutput:
    """``logits``: batch x length x vocab; ``cache``: per-layer (k, v) of cached + input tokens."""

    logits: torch.Tensor
    loss: torch.Tensor | None = None
    cache: list[LayerCache] | None = None


def rotary_tables(positions: torch.Tensor, head_dim: int, theta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """cos/sin tables (batch x 1 x length x head_dim/2) for integer positions (batch x length)."""
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, device=positions.device, dtype=torch.float32) / head_dim))
    angles = positions.to(torch.float32)[..., None] * inv_freq
    return angles.cos()[:, None], angles.sin()[:, None]


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    # Rotate pairs (first half, second half) of each head's channels by the position's angle.
    x1, x2 = x.float().chunk(2, dim=-1)
    rotated = torch.cat((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1)
    return rotated.to(x.dtype)


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        normed = x.float() * torch.rsqrt(x.float().pow(2).mean(-1, keepdim=True) + self.eps)
        return normed.to(x.dtype) * self.weight


class Attention(nn.Module):
    def __init__(self, config: CanvasConfig):
        super().__init__()
        self.num_heads = config.num_attention_heads
        self.head_dim = config.hidden_size // config.num_attention_heads
        self.qkv = nn.Linear(config.hidden_size, 3 * config.hidden_size, bias=False)
        self.out = nn.Linear(config.hidden_size, config.hidden_size, bias=False)

    def forward(
        self,
        x: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        attn_mask: torch.Tensor | None,
        is_causal: bool,
        past: LayerCache | None,
    ) -> tuple[torch.Tensor, LayerCache]:
        batch, length, width = x.shape
        q, k, v = self.qkv(x).view(batch, length, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
        if past is not None:
            k = torch.cat((past[0], k), dim=2)
            v = torch.cat((past[1], v), dim=2)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, is_causal=is_causal)
        return self.out(y.transpose(1, 2).reshape(batch, length, width)), (k, v)


class SwiGLU(nn.Module):
    def __init__(self, config: CanvasConfig):
        super().__init__()
        self.gate_up = nn.Linear(config.hidden_size, 2 * config.intermediate_size, bias=False)
        self.down = nn.Linear(config.intermediate_size, config.hidden_size, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = self.gate_up(x).chunk(2, dim=-1)
        return self.down(F.silu(gate) * up)


class Block(nn.Module):
    def __init__(self, config: CanvasConfig):
        super().__init__()
        self.attn_norm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.attn = Attention(config)
        self.mlp_norm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.mlp = SwiGLU(config)

    def forward(self, x, cos, sin, attn_mask, is_causal, past):
        attended, layer_cache = self.attn(self.attn_norm(x), cos, sin, attn_mask, is_causal, past)
        x = x + attended
        return x + self.mlp(self.mlp_norm(x)), layer_cache


class CanvasPreTrainedModel(PreTrainedModel):
    config_class = CanvasConfig
    base_model_prefix = "canvas"
    _no_split_modules = ["Block"]

    def _init_weights(self, module: nn.Module) -> None:
        std = self.config.initializer_range
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=std)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=std)
        elif isinstance(module, RMSNorm):
            nn.init.ones_(module.weight)


class CanvasLM(CanvasPreTrainedModel):
    """Token ids -> logits, position i predicting token i (bidirectional) or i+1 (``causal=True``)."""

    _tied_weights_keys = {"lm_head.weight": "embed_tokens.weight"}

    def __init__(self, config: CanvasConfig):
        super().__init__(config)
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size)
        self.layers = nn.ModuleList(Block(config) for _ in range(config.num_hidden_layers))
        self.norm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.post_init()
        # Scale residual output projections by depth (GPT-2 style) so deep stacks start stable.
        with torch.no_grad():
            for block in self.layers:
                block.attn.out.weight.mul_(1 / math.sqrt(2 * config.num_hidden_layers))
                block.mlp.down.weight.mul_(1 / math.sqrt(2 * config.num_hidden_layers))

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embed_tokens

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.embed_tokens = value

    def get_output_embeddings(self) -> nn.Linear:
        return self.lm_head

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        cache: list[LayerCache] | None = None,
        use_cache: bool = False,
        labels: torch.Tensor | None = None,
        logits_to_keep: torch.Tensor | None = None,
        **kwargs,
    ) -> CanvasOutput:
        """Run the stack on ``input_ids`` (batch x length).

        ``attention_mask`` (batch x keys, 1 = attend) covers past + input keys and masks padding.
        ``position_ids`` default to ``past_length + arange(length)``; the Fast-dLLM dual cache passes
        the real positions of a middle block. ``cache`` entries are prepended to every layer's keys
        and values: for the causal model they are the past tokens, for the bidirectional model any set
        of cached positions (prefix, or prefix + suffix), since without a causal mask order is free.
        ``labels`` gives the next-token loss for the causal model (ignored index -100).
        ``logits_to_keep`` (1-D indices into the input's positions, transformers' name) computes the
        vocabulary projection only there: a sampler that reads a 32-slot block out of a 300-token
        refresh skips nine tenths of the output layer.
        """
        batch, length = input_ids.shape
        past_length = 0 if cache is None else cache[0][0].shape[2]
        if position_ids is None:
            position_ids = torch.arange(past_length, past_length + length, device=input_ids.device)
            position_ids = position_ids.unsqueeze(0).expand(batch, -1)
        head_dim = self.config.hidden_size // self.config.num_attention_heads
        cos, sin = rotary_tables(position_ids, head_dim, self.config.rope_theta)

        attn_mask, is_causal = self._attention_mask(attention_mask, batch, length, past_length, input_ids.device)
        x = self.embed_tokens(input_ids)
        new_cache: list[LayerCache] = []
        for index, block in enumerate(self.layers):
            past = None if cache is None else cache[index]
            x, layer_cache = block(x, cos, sin, attn_mask, is_causal, past)
            new_cache.append(layer_cache)
        if logits_to_keep is not None:
            x = x[:, logits_to_keep]
        logits = self.lm_head(self.norm(x))

        loss = None
        if labels is not None:
            shifted = logits[:, :-1].reshape(-1, logits.shape[-1]).float()
            loss = F.cross_entropy(shifted, labels[:, 1:].reshape(-1), ignore_index=-100)
        return CanvasOutput(logits=logits, loss=loss, cache=new_cache if use_cache else None)

    def _attention_mask(self, attention_mask, batch, length, past_length, device):
        """Boolean mask (True = attend) broadcastable to batch x heads x queries x keys, or SDPA's flag."""
        causal = self.config.causal
        if attention_mask is None and (not causal or past_length == 0 or length == 1):
            # Fast paths: no mask at all, or SDPA's own causal mask (exact when there is no past;
            # a single query with a past attends to everything anyway).
            return None, causal and past_length == 0 and length > 1
        keys = past_length + length
        allowed = torch.ones(batch, 1, length, keys, dtype=torch.bool, device=device)
        if causal:
            query_pos = torch.arange(past_length, keys, device=device)[:, None]
            allowed = allowed & (torch.arange(keys, device=device)[None, :] <= query_pos)
        if attention_mask is not None:
            allowed = allowed & attention_mask[:, None, None, :keys].to(torch.bool)
            # A fully padded query row would give NaN; let it attend to itself harmlessly.
            allowed = allowed | ~allowed.any(-1, keepdim=True)
        return allowed, False


def register_auto_classes() -> None:
    """Make ``Auto*.from_pretrained`` understand ``model_type: diffusion-canvas``."""
    from transformers import AutoConfig, AutoModel, AutoModelForCausalLM, AutoModelForMaskedLM

    AutoConfig.register(MODEL_TYPE, CanvasConfig, exist_ok=True)
    for auto_class in (AutoModel, AutoModelForCausalLM, AutoModelForMaskedLM):
        auto_class.register(CanvasConfig, CanvasLM, exist_ok=True)
