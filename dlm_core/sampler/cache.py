"""Fast-dLLM key/value caching for block (semi-autoregressive) diffusion decoding.

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

Both are approximations; ``python -m dlm_core.bench`` measures their token agreement with the
uncached run and the quality of the text. A cached step still costs one NFE (one forward call).

Our simplifications: the "block" is the span from the first to the last slot of the active window
(contiguous for appended generation; for scattered [MASK] placeholders it covers them all). Rows of
a batch share one cache only when their windows coincide and nothing is padded; otherwise the step
falls back to a full forward (still correct, just not faster). Classifier-free guidance is not
combined with caching (``ConfigError``).
"""

from __future__ import annotations

import torch

from .config import CACHE_MODES


class CachedForward:
    """Fast-dLLM's prefix or dual cache as a step function (``denoise`` uses it when ``config.cache`` is set)."""

    cost = 1

    def __init__(self, model, mode: str):
        if mode not in CACHE_MODES:
            raise ValueError(f"cache must be one of {', '.join(CACHE_MODES)}, got {mode!r}")
        if not getattr(model, "supports_cache", False):
            raise ValueError(f"model {model.name!r} does not support key/value caching; use cache=None")
        self.model, self.mode = model, mode
        self._key: tuple | None = None  # identifies the block the stored cache belongs to
        self._cache: list | None = None
        self.refreshes = 0

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
