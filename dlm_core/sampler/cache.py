"""Key/value caching for block (semi-autoregressive) diffusion decoding: Fast-dLLM's two and a window cache.

Wu et al. 2025, "Fast-dLLM: Training-free Acceleration of Diffusion LLM by Enabling KV Cache and
Parallel Decoding", section 3.2. In a bidirectional model every key/value depends on the whole
canvas, so no cache is exact; but within one block the tokens outside it barely change, and their
keys/values are nearly constant from step to step. So:

* at the first step of every block (a *refresh*) the whole canvas goes through the model once, which
  gives this step's logits exactly and stores every layer's keys/values;
* ``prefix`` cache: the later steps of the block recompute only the block and everything after it
  (the suffix), attending to the stored keys/values of the prefix;
* ``dual`` cache: the later steps recompute only the block itself, attending to the stored prefix
  *and* suffix keys/values (the suffix is mostly [MASK] tokens, which Fast-dLLM observes are stable).

The refresh is the expensive part: at 512 tokens it recomputes ~530 positions once per block of 32,
more than the block's other seven passes together (at 4 tokens per pass). The ``window`` cache never
recomputes the whole canvas; it combines two published training-free approximations:

* block-wise delayed caching (as block diffusion decodes, BD3-LM / Fast-dLLM v2, and dKV-Cache's
  "delayed" caching of decoded tokens): a finished block's keys/values are computed once, at the
  first step of the next block, from its final tokens, and then kept for the rest of the run;
  earlier blocks are never recomputed (``dual`` recomputes them at every block);
* suffix dropout (DPad, Chen et al. 2025, "Efficient Diffusion Language Models with Suffix
  Dropout"): [MASK] slots more than ``suffix_window`` slots after the block are left out of the
  forward altogether; the nearer ones are computed at the block's first step and cached like the
  dual cache's suffix. Text after the block (infilling) is always kept.

So the first step of a block computes the just-finished block, the block and the window (128 positions
at blocks of 32 and the default window of 64, not ~530), and the later steps compute the block alone. Our
simplification of DPad: a hard window, without its distance-decay random dropout of the farther masks.

All three are approximations; ``python -m dlm_core.bench`` measures their token agreement with the
uncached run and the quality of the text. A cached step still costs one NFE (one forward call).

Our simplifications: the "block" is the span from the first to the last slot of the active window
(contiguous for appended generation; for scattered [MASK] placeholders it covers them all). Rows of
a batch share one cache only when their windows coincide and nothing is padded; otherwise the step
falls back to a full forward (still correct, just not faster). Classifier-free guidance is not
combined with caching (``ConfigError``).
"""

from __future__ import annotations

import torch

from .config import CACHE_MODES, SUFFIX_WINDOW


class CachedForward:
    """The prefix, dual (Fast-dLLM) or window cache as a step function (``denoise`` uses it when
    ``config.cache`` is set); ``suffix_window`` is the window cache's count of [MASK] slots kept after the block."""

    cost = 1

    def __init__(self, model, mode: str, suffix_window: int = SUFFIX_WINDOW):
        if mode not in CACHE_MODES:
            raise ValueError(f"cache must be one of {', '.join(CACHE_MODES)}, got {mode!r}")
        if not getattr(model, "supports_cache", False):
            raise ValueError(f"model {model.name!r} does not support key/value caching; use cache=None")
        self.model, self.mode, self.suffix_window = model, mode, suffix_window
        self._key: tuple | None = None  # identifies the block the stored cache belongs to
        self._cache: list | None = None  # what the block's later steps attend to
        self._prefix: list | None = None  # window mode: finished slots [0, _finished), computed once
        self._finished = 0
        self.refreshes = 0  # forwards at a block's first step (full canvas, or in window mode the new slots)

    def __call__(
        self, x: torch.Tensor, attention_mask: torch.Tensor | None, fixed: torch.Tensor, window: torch.Tensor
    ) -> torch.Tensor:
        rows, length = x.shape
        shared_window = bool((window == window[:1]).all())
        if attention_mask is not None or not shared_window:
            self._key = None  # rows disagree: exact full forward, no cache kept
            logits = self.model.logits(x, attention_mask)
            return logits.gather(1, window.unsqueeze(-1).expand(-1, -1, logits.shape[-1]))
        lo, hi = int(window[0].min()), int(window[0].max()) + 1
        key = (rows, length, lo, hi)
        if key != self._key:
            if self.mode == "window":
                return self._enter_block(x, window, key, lo, hi)
            return self._refresh(x, window, key, lo, hi)
        positions = torch.arange(lo, length if self.mode == "prefix" else hi, device=x.device)
        # Only the window's logits are read: the vocabulary projection runs there alone.
        logits, _ = self.model.forward_cached(
            x[:, positions], self._cache, positions.expand(rows, -1), logits_at=window[0] - lo
        )
        return logits

    def _refresh(self, x: torch.Tensor, window: torch.Tensor, key: tuple, lo: int, hi: int) -> torch.Tensor:
        """Full forward at a block boundary: exact logits, and the keys/values outside the block kept."""
        logits, full_cache = self.model.forward_cached(x, logits_at=window[0])
        keep = torch.arange(lo, device=x.device)
        if self.mode == "dual":
            keep = torch.cat((keep, torch.arange(hi, x.shape[1], device=x.device)))
        self._cache = [(k[:, :, keep], v[:, :, keep]) for k, v in full_cache]
        self._key = key
        self.refreshes += 1
        return logits

    def _enter_block(self, x: torch.Tensor, window: torch.Tensor, key: tuple, lo: int, hi: int) -> torch.Tensor:
        """Window mode, first step of a block: compute the slots finished since the last block, the block
        and the suffix window against the kept prefix; keep the finished slots' keys/values for good."""
        rows, length = x.shape
        if self._key is None or self._key[:2] != key[:2] or lo < self._finished:
            self._prefix, self._finished = None, 0  # a new canvas (or a step back): nothing cached applies
        after = torch.arange(hi, length, device=x.device)
        # DPad's window: far [MASK] slots are dropped; text after the block (infilling) always counts.
        kept = after[(x[:, hi:] != self.model.mask_id).any(0) | (after < hi + self.suffix_window)]
        positions = torch.cat((torch.arange(self._finished, hi, device=x.device), kept))
        logits, cache = self.model.forward_cached(
            x[:, positions], self._prefix, positions.expand(rows, -1), logits_at=window[0] - self._finished
        )
        # The new cache holds slots [0, hi) in order, then the kept suffix: the finished ones end at lo.
        self._prefix = [(k[:, :, :lo], v[:, :, :lo]) for k, v in cache]
        # The block's own keys/values [lo, hi) are recomputed at every step; the rest is attended to.
        self._cache = [(torch.cat((k[:, :, :lo], k[:, :, hi:]), 2), torch.cat((v[:, :, :lo], v[:, :, hi:]), 2))
                       for k, v in cache]
        self._finished, self._key = lo, key
        self.refreshes += 1
        return logits
