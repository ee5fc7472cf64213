"""The model interface: anything that maps token ids to logits, plus what the sampler needs to know.

Every model the product can show (the tiny random test model, the built-in Shakespeare pair, hub
models such as LLaDA or Dream, any masked LM) is wrapped in a ``ModelAdapter``. The sampler only
ever calls ``adapter.logits(ids)`` and reads the attributes below, so adding a model family means
writing one adapter, never touching decoding code.

Alignment contract: ``logits(ids)[b, i]`` is the distribution for token ``i`` itself. Models that
predict ``i`` from ``i - 1`` (Dream, autoregressive twins used as scorers) shift inside their adapter.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Literal, Protocol

import torch

from ..state import MASK_GLYPH

ModelKind = Literal["diffusion", "autoregressive"]


class Codec(Protocol):
    """The tokenizer surface the engine and UI need."""

    vocab_size: int

    def encode(self, text: str) -> list[int]: ...

    def decode(self, ids: list[int]) -> str: ...

    def token_text(self, token_id: int) -> str:
        """The text one token stands for, whitespace and newlines included (for the canvas)."""
        ...


class HFCodec:
    """A ``transformers`` tokenizer seen through the ``Codec`` protocol (no special tokens added)."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.vocab_size = len(tokenizer)
        self._token_text_cache: dict[int, str] = {}

    def encode(self, text: str) -> list[int]:
        return list(self.tokenizer.encode(text, add_special_tokens=False))

    def decode(self, ids: list[int] | int, **_: object) -> str:
        """The text of ``ids`` (or of one id: transformers' streamers decode single tokens too)."""
        ids = [ids] if not hasattr(ids, "__iter__") else ids
        return self.tokenizer.decode([int(i) for i in ids], skip_special_tokens=False, clean_up_tokenization_spaces=False)

    def token_text(self, token_id: int) -> str:
        token_id = int(token_id)
        if token_id not in self._token_text_cache:
            self._token_text_cache[token_id] = self.decode([token_id])
        return self._token_text_cache[token_id]


class CharCodec:
    """One token per character over a fixed alphabet, plus mask and end-of-text: for tests and toys."""

    MASK = MASK_GLYPH  # the mask token reads as the display shows a mask
    EOS = "\u2403"

    def __init__(self, alphabet: str):
        self.symbols = list(dict.fromkeys(alphabet)) + [self.MASK, self.EOS]
        self.index = {symbol: i for i, symbol in enumerate(self.symbols)}
        self.vocab_size = len(self.symbols)
        self.mask_id = self.index[self.MASK]
        self.eos_id = self.index[self.EOS]
        self.unknown_id = self.index.get("?", 0)

    def encode(self, text: str) -> list[int]:
        return [self.index.get(ch, self.unknown_id) for ch in text]

    def decode(self, ids: list[int] | int, **_: object) -> str:
        """The text of ``ids`` (or of one id: transformers' streamers decode single tokens too)."""
        if not hasattr(ids, "__iter__"):
            ids = [ids]
        return "".join(self.symbols[int(i)] for i in ids)

    def token_text(self, token_id: int) -> str:
        return self.symbols[int(token_id)]


class ModelAdapter(ABC):
    """Wraps one model for the engine.

    Attributes every adapter sets: ``name`` (display name), ``kind`` ("diffusion" or
    "autoregressive"), ``codec`` (a ``Codec``), ``mask_id``, ``eos_ids`` (end-of-text / end-of-turn
    ids; generation past the first one is not part of the answer), ``max_length`` (prompt +
    generation), ``vocab_size`` and ``device``.
    """

    name: str
    kind: ModelKind
    codec: Codec
    mask_id: int
    eos_ids: tuple[int, ...]
    max_length: int
    vocab_size: int
    device: torch.device = torch.device("cpu")

    @abstractmethod
    def logits(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Float logits (batch x length x vocab) for ``input_ids`` (batch x length), position-aligned."""

    def prepare_prompt(self, text: str) -> str:
        """Hook for chat templates: instruct models wrap the user's text here. Default: unchanged."""
        return text

    def encode(self, text: str) -> list[int]:
        return self.codec.encode(text)

    def decode(self, ids: list[int]) -> str:
        return self.codec.decode(ids)

    def token_text(self, token_id: int) -> str:
        return self.codec.token_text(token_id)
