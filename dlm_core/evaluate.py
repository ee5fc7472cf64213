"""Held-out likelihood of the built-in models: ``python -m dlm_core.evaluate``.

All figures are bits per character of the held-out plays (``dlm_core.data.VALIDATION_PLAYS``), on the
same non-overlapping windows of ``--window`` tokens, each scored on its own (no context from the
previous window), so the three numbers bound the same quantity, -log2 p(window) / characters:

* unigram baseline: token frequencies of the training plays (add-one smoothed);
* autoregressive twin: exact NLL, the first token of a window under the unigram model (the twin has
  no beginning-of-text token to condition on), every later token under the twin;
* diffusion model: the masked-diffusion ELBO (LLaDA eq. 3 / MDLM), an upper bound on the NLL,
  Monte-Carlo over t: ``--samples`` stratified draws of t per window, fixed seed. The standard error
  of the mean over windows is reported so one can see the figure is stable to 1 %.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .models.builtin import ASSETS_DIR, load_canvas
from .train import MIN_MASK_RATE

LN2 = math.log(2)


def windows(stream: np.ndarray, length: int) -> torch.Tensor:
    count = stream.size // length
    return torch.from_numpy(stream[: count * length].astype(np.int64)).view(count, length)


def unigram_log_probs(train_stream: np.ndarray, vocab_size: int) -> torch.Tensor:
    counts = np.bincount(train_stream, minlength=vocab_size).astype(np.float64) + 1.0
    return torch.from_numpy(np.log(counts / counts.sum()))


@torch.no_grad()
def ar_window_nll(model, batch: torch.Tensor, unigram: torch.Tensor) -> torch.Tensor:
    """Exact NLL in nats of each window: unigram for token 0, the causal model for the rest."""
    logits = model(batch[:, :-1]).logits.float()
    nll = F.cross_entropy(logits.transpose(1, 2), batch[:, 1:], reduction="none").sum(dim=1)
    return nll - unigram[batch[:, 0]].float()


@torch.no_grad()
def diffusion_window_elbo(model, batch: torch.Tensor, mask_id: int, samples: int, generator: torch.Generator) -> torch.Tensor:
    """Monte-Carlo masked-diffusion ELBO (nats) of each window: mean over stratified t of sum_masked CE / t."""
    windows_count, length = batch.shape
    total = torch.zeros(windows_count, dtype=torch.float64)
    offsets = torch.rand(windows_count, generator=generator)
    for k in range(samples):
        t = ((k + offsets) / samples).clamp(max=1.0)
        mask_rate = (1 - MIN_MASK_RATE) * t + MIN_MASK_RATE
        masked = torch.rand(windows_count, length, generator=generator) < mask_rate[:, None]
        noisy = torch.where(masked, torch.full_like(batch, mask_id), batch)
        logits = model(noisy).logits.float()
        loss = F.cross_entropy(logits.transpose(1, 2), batch, reduction="none")
        total += ((loss * masked).sum(dim=1) / mask_rate).double()
    return total / samples


def evaluate(args) -> dict:
    data = Path(args.data)
    stats = json.loads((data / "stats.json").read_text())
    train_stream, val_stream = np.load(data / "train.npy"), np.load(data / "validation.npy")
    val = windows(val_stream, args.window)
    # Characters covered by the scored windows (the tail shorter than a window is dropped).
    chars = stats["validation"]["chars"] * val.numel() / val_stream.size
    unigram = unigram_log_probs(train_stream, stats["vocab_size"])
    results: dict = {
        "validation_plays": stats["validation_plays"],
        "windows": int(val.shape[0]),
        "window_tokens": args.window,
        "characters": round(chars),
        "unigram_bits_per_char": float(-unigram[val].sum() / LN2 / chars),
    }
    torch.set_num_threads(args.threads)
    if args.ar:
        model = load_canvas(args.ar).model
        nll = torch.cat([ar_window_nll(model, chunk, unigram) for chunk in val.split(args.batch)])
        results["ar_bits_per_char"] = float(nll.sum() / LN2 / chars)
    if args.diffusion:
        adapter = load_canvas(args.diffusion)
        generator = torch.Generator().manual_seed(args.seed)
        elbo = torch.cat(
            [diffusion_window_elbo(adapter.model, chunk, adapter.mask_id, args.samples, generator) for chunk in val.split(args.batch)]
        )
        per_window = elbo / LN2 / (chars / val.shape[0])
        results["diffusion_bits_per_char"] = float(elbo.sum() / LN2 / chars)
        results["diffusion_bits_per_char_stderr"] = float(per_window.std() / math.sqrt(per_window.numel()))
        results["diffusion_samples_per_window"] = args.samples
    if "ar_bits_per_char" in results and "diffusion_bits_per_char" in results:
        results["diffusion_over_ar"] = results["diffusion_bits_per_char"] / results["ar_bits_per_char"]
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m dlm_core.evaluate", description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="runs/data", help="output of `python -m dlm_core.train prepare`")
    parser.add_argument("--ar", default=str(ASSETS_DIR / "canvas-ar"))
    parser.add_argument("--diffusion", default=str(ASSETS_DIR / "canvas-diffusion"))
    parser.add_argument("--window", type=int, default=512)
    parser.add_argument("--samples", type=int, default=16, help="Monte-Carlo draws of t per window")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", default=None, help="also write the results here")
    args = parser.parse_args(argv)
    results = evaluate(args)
    text = json.dumps(results, indent=2)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")


if __name__ == "__main__":
    main()
