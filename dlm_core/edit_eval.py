"""Does a diffusion model correct tokens? ``python -m dlm_core.edit_eval``.

Measures a model trained to edit (``python -m dlm_core.train train --objective edit``) next to a
baseline (default: the shipped ``assets/canvas-diffusion``) on the held-out plays, three ways:

1. Held-out likelihood under each corruption, on ``--windows`` windows of ``--window`` tokens spread
   evenly over ``validation.npy``, each scored on its own:
   * masking: the masked-diffusion ELBO in bits per character (``evaluate.diffusion_window_elbo``,
     ``--samples`` stratified draws of t per window, fixed seed); characters per token are the
     held-out plays' average (``stats.json``), as ``dlm_core.evaluate`` counts them;
   * random tokens at each rate r of ``--rates``: each position is replaced with probability r by a
     token drawn uniformly from ``sampler.noise_ids`` (a draw equal to the original leaves the
     position clean), no masks, one forward pass. Recovery accuracy: the share of replaced positions
     whose top-1 prediction is the original token; false-edit rate: the share of clean positions
     whose top-1 is not the visible (original) token; mean cross-entropy of the original token in
     nats, at replaced positions, at clean ones and over all. [MASK] is never a prediction.
2. Edit precision: samples with mask-based decoding and token editing (``edit_threshold`` = each tau
   of ``--taus``) at the app's sampling settings. An edit *in the final text* is the last edit at a
   position whose token survives to the end (and lies before the answer's end). Reverting it (its old
   token back, everything else as generated) and scoring prompt + answer under the AR twin tells
   whether the edit lowered the twin's NLL of the text: precision = the share of final-text edits
   whose revert raises it. Also reported: the edit count and the mean NLL change per edit (nats).
3. Sample quality of the same runs' generated regions (``evaluate.text_quality``: generative perplexity under the AR
   twin, token entropy, repeated 4-grams; ``quality.known_word_share``): mask-based decoding without
   editing, with each tau, and uniform-state decoding (``noise = "uniform"``) with each entropy bound of
   ``--uniform-gamma`` (temperature ``--uniform-t-max`` -> ``--uniform-t-min``, DiffusionGemma's 0.8 -> 0.4).

Writes JSON (``--json``), a markdown report (``--markdown``) and, with ``--card``, the model card
``README.md`` of the ``--model`` folder (every number from this run and the folder's
``training.json``); prints the JSON.
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .evaluate import LN2, SAMPLE_PROMPTS, diffusion_window_elbo, text_quality
from .models.builtin import ASSETS_DIR, BUILTIN_ORDER_TEMPERATURE, load_canvas
from .quality import generative_nll, known_word_share
from .sampler import SamplerConfig, denoise, noise_ids

DEFAULT_RATES = (0.1, 0.3)
DEFAULT_TAUS = (0.5, 0.7, 0.9)


# -- 1. held-out likelihood under each corruption -------------------------------------------------------


def held_out_windows(stream: np.ndarray, window: int, count: int) -> torch.Tensor:
    """``count`` windows of ``window`` tokens spread evenly over ``stream`` (count x window, int64)."""
    if window < 2 or count < 1 or stream.size < window:
        raise ValueError(f"need 1+ windows of 2+ tokens within {stream.size} tokens, got {count} x {window}")
    starts = np.linspace(0, stream.size - window, num=count).astype(np.int64)
    return torch.from_numpy(np.stack([stream[s : s + window] for s in starts]).astype(np.int64))


@torch.no_grad()
def corruption_metrics(model, windows: torch.Tensor, rate: float, generator: torch.Generator) -> dict:
    """Random-token corruption at ``rate``: recovery accuracy, false-edit rate and mean cross-entropy
    (nats) of ``model`` (a diffusion ``ModelAdapter``) on ``windows`` (see the module docstring)."""
    noise = noise_ids(model)
    draw = noise[torch.randint(len(noise), windows.shape, generator=generator)]
    replaced = (torch.rand(windows.shape, generator=generator) < rate) & (draw != windows)
    noisy = torch.where(replaced, draw, windows)
    logits = model.logits(noisy.to(model.device)).float().cpu()
    logits[..., model.mask_id] = float("-inf")
    top = logits.argmax(-1)
    ce = F.cross_entropy(logits.transpose(1, 2), windows, reduction="none")
    clean = ~replaced
    return {
        "rate": rate,
        "replaced_positions": int(replaced.sum()),
        "clean_positions": int(clean.sum()),
        "recovery_accuracy": _share(top[replaced] == windows[replaced]),
        "false_edit_rate": _share(top[clean] != windows[clean]),
        "ce_replaced": _mean(ce[replaced]),
        "ce_clean": _mean(ce[clean]),
        "ce_all": _mean(ce.flatten()),
    }


def _share(hits: torch.Tensor) -> float:
    return float(hits.double().mean()) if hits.numel() else math.nan


def _mean(values: torch.Tensor) -> float:
    return float(values.double().mean()) if values.numel() else math.nan


@torch.no_grad()
def likelihood_report(model, windows: torch.Tensor, chars_per_token: float, samples: int,
                      rates: Sequence[float], seed: int, batch: int = 8) -> dict:
    """The masked-diffusion ELBO (bits per character) and the random-token figures at each rate."""
    generator = torch.Generator().manual_seed(seed)
    elbo = torch.cat([
        diffusion_window_elbo(model.model, chunk.to(model.device), model.mask_id, samples, generator).cpu()
        for chunk in windows.split(batch)
    ])
    chars = chars_per_token * windows.shape[1]
    per_window = elbo / LN2 / chars
    result = {
        "mask_elbo_bits_per_char": float(per_window.mean()),
        "mask_elbo_stderr": float(per_window.std() / math.sqrt(len(per_window))) if len(per_window) > 1 else math.nan,
    }
    for rate in rates:
        generator = torch.Generator().manual_seed(seed + 1)  # the same corruption for every model
        parts = [corruption_metrics(model, chunk, rate, generator) for chunk in windows.split(batch)]
        result[f"random_{rate:g}"] = _pool(parts)
    return result


def _pool(parts: list[dict]) -> dict:
    """Corruption figures of several batches, pooled (position-weighted means)."""
    replaced = sum(p["replaced_positions"] for p in parts)
    clean = sum(p["clean_positions"] for p in parts)

    def weighted(key: str, weight: str) -> float:
        total = sum(p[weight] for p in parts if not math.isnan(p[key]))
        return sum(p[key] * p[weight] for p in parts if not math.isnan(p[key])) / total if total else math.nan

    for p in parts:
        p["all_positions"] = p["replaced_positions"] + p["clean_positions"]
    return {
        "rate": parts[0]["rate"],
        "replaced_positions": replaced,
        "clean_positions": clean,
        "recovery_accuracy": weighted("recovery_accuracy", "replaced_positions"),
        "false_edit_rate": weighted("false_edit_rate", "clean_positions"),
        "ce_replaced": weighted("ce_replaced", "replaced_positions"),
        "ce_clean": weighted("ce_clean", "clean_positions"),
        "ce_all": weighted("ce_all", "all_positions"),
    }


# -- 2. edit precision --------------------------------------------------------------------------------------


def final_edits(states: Sequence) -> list[tuple[int, int, int]]:
    """(position, old token, new token) of every edit in the final text: the last edit at each position
    whose new token is still there at the end, before the answer's end."""
    last: dict[int, tuple[int, int]] = {}
    for state in states:
        for position, old in zip(state.edited.tolist(), state.edited_from.tolist(), strict=True):
            last[position] = (old, int(state.tokens[position]))
    final = states[-1]
    return [
        (position, old, new)
        for position, (old, new) in sorted(last.items())
        if position < final.answer_end and int(final.tokens[position]) == new
    ]


def text_nll(scorer, final, tokens: np.ndarray | None = None) -> float:
    """The AR twin's NLL (nats) of ``final``'s answer after its prompt (``tokens`` replaces the canvas)."""
    tokens = final.tokens if tokens is None else tokens
    return generative_nll(scorer, tokens[: final.prompt_length].tolist(),
                          tokens[final.prompt_length : final.answer_end].tolist())[0]


def edit_precision(scorer, runs: Sequence[Sequence]) -> dict:
    """Edit precision over runs (each a list of states): share of final-text edits whose revert raises
    the twin's NLL of the text, the edit count, and the mean NLL change an edit made (nats, < 0 = better)."""
    deltas = []
    for states in runs:
        final = states[-1]
        base = text_nll(scorer, final)
        for position, old, _new in final_edits(states):
            reverted = final.tokens.copy()
            reverted[position] = old
            deltas.append(base - text_nll(scorer, final, reverted))
    deltas = np.asarray(deltas, dtype=np.float64)
    return {
        "edits": int(deltas.size),
        "edits_per_sample": float(deltas.size / len(runs)) if runs else math.nan,
        "precision": float((deltas < 0).mean()) if deltas.size else math.nan,
        "mean_nll_change": float(deltas.mean()) if deltas.size else math.nan,
    }


# -- 3. sampling and quality ------------------------------------------------------------------------------


def app_sampling(gen_length: int, block: int) -> SamplerConfig:
    """The app's sampling of the built-in model (temperature 1, top-p 0.95, the built-in order
    temperature, confident first, one token per step, blocks of ``block``), as ``dlm_core.evaluate``."""
    return SamplerConfig(gen_length=gen_length, steps=gen_length, block_length=block or None,
                         strategy="low_confidence", temperature=1.0, top_p=0.95,
                         order_temperature=BUILTIN_ORDER_TEMPERATURE)


def uniform_sampling(gen_length: int, steps: int, gamma: float, t_max: float, t_min: float,
                     stop_confidence: float | None) -> SamplerConfig:
    return SamplerConfig(gen_length=gen_length, steps=steps or None, noise="uniform", temperature=t_max,
                         final_temperature=t_min, gamma=gamma, stop_confidence=stop_confidence)


def sample_runs(model, config: SamplerConfig, prompts: Sequence[str], seeds: int) -> list[list]:
    """Every state of every run, prompt-major, seeds 0..seeds-1."""
    return [list(denoise(model, prompt, config.replace(seed=seed))) for prompt in prompts for seed in range(seeds)]


def run_quality(model, scorer, runs: Sequence[Sequence], vocabulary: frozenset[str] | None = None) -> dict:
    """``text_quality`` of the generated regions (all of it, as ``evaluate.sample_quality`` scores them)
    plus their known-word share and forward passes per sample."""
    finals = [states[-1] for states in runs]
    pairs = [(f.tokens[: f.prompt_length].tolist(), f.tokens[f.prompt_length :].tolist()) for f in finals]
    known = [known_word_share(model.decode(generated), vocabulary) for _, generated in pairs]
    known = [k for k in known if not math.isnan(k)]
    return {
        **text_quality(scorer, pairs),
        "known_word_share": float(np.mean(known)) if known else math.nan,
        "nfe_per_sample": float(np.mean([f.nfe for f in finals])),
    }


def sampling_report(model, scorer, args, vocabulary: frozenset[str] | None = None) -> tuple[dict, list[str]]:
    """Quality (and edit precision where editing is on) of every decoding variant, and one sample text each."""
    prompts = SAMPLE_PROMPTS[: args.prompts]
    base = app_sampling(args.gen_length, args.gen_block)
    variants: list[tuple[str, SamplerConfig]] = [("mask", base)]
    variants += [(f"mask+edit tau={tau:g}", base.replace(edit_threshold=tau)) for tau in args.taus]
    variants += [(f"uniform gamma={gamma:g}", uniform_sampling(args.gen_length, args.uniform_steps, gamma, args.uniform_t_max,
                                                               args.uniform_t_min, args.uniform_stop))
                 for gamma in args.uniform_gamma]
    results, samples = {}, []
    for name, config in variants:
        runs = sample_runs(model, config, prompts, args.seeds)
        entry = {"settings": {k: v for k, v in config.to_dict().items() if k != "seed"}, **run_quality(model, scorer, runs, vocabulary)}
        if config.edit_threshold is not None:
            entry["edit_precision"] = edit_precision(scorer, runs)
        results[name] = entry
        samples.append(f"**{name}** (seed 0):\n\n```text\n{model.decode(runs[0][-1].text_ids())}\n```\n")
    return results, samples


# -- the whole report ----------------------------------------------------------------------------------------


def report(models: dict[str, object], scorer, data: Path, args, vocabulary: frozenset[str] | None = None) -> tuple[dict, str]:
    """Every figure for each of ``models`` (name -> diffusion adapter): JSON-ready dict and markdown."""
    stats = json.loads((data / "stats.json").read_text())
    stream = np.load(data / "validation.npy")
    chars_per_token = stats["validation"]["chars"] / stream.size
    windows = held_out_windows(stream, args.window, args.windows)
    results: dict = {
        "data": {"windows": args.windows, "window_tokens": args.window, "chars_per_token": chars_per_token,
                 "elbo_samples_per_window": args.samples, "rates": list(args.rates), "seed": args.seed},
        "sampling": {"prompts": list(SAMPLE_PROMPTS[: args.prompts]), "seeds": args.seeds, "gen_length": args.gen_length},
        "models": {},
    }
    samples_md = []
    for name, model in models.items():
        likelihood = likelihood_report(model, windows, chars_per_token, args.samples, args.rates, args.seed)
        sampling, samples = sampling_report(model, scorer, args, vocabulary)
        results["models"][name] = {"likelihood": likelihood, "sampling": sampling}
        samples_md += [f"### {name}\n"] + samples
    return results, markdown(results) + "\n## Samples\n\n" + "\n".join(samples_md)


def markdown(results: dict) -> str:
    """The report's tables."""
    data, names = results["data"], list(results["models"])
    lines = [
        "# Editing and renoising: measured",
        "",
        f"Held-out windows: {data['windows']} x {data['window_tokens']} tokens; ELBO with "
        f"{data['elbo_samples_per_window']} draws of t per window.",
        "",
        "## Held-out likelihood under each corruption",
        "",
        "| model | masking: ELBO bits/char | " + " | ".join(
            f"random {r:.0%}: recovery / false edits / CE replaced / CE clean / CE all" for r in data["rates"]) + " |",
        "| --- | ---: | " + " | ".join("---:" for _ in data["rates"]) + " |",
    ]
    for name in names:
        lik = results["models"][name]["likelihood"]
        cells = [f"{lik['mask_elbo_bits_per_char']:.3f} ± {lik['mask_elbo_stderr']:.3f}"]
        for rate in data["rates"]:
            c = lik[f"random_{rate:g}"]
            cells.append(f"{c['recovery_accuracy']:.1%} / {c['false_edit_rate']:.1%} / {c['ce_replaced']:.2f} / "
                         f"{c['ce_clean']:.2f} / {c['ce_all']:.2f}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    sampling = results["sampling"]
    lines += [
        "",
        f"## Sampling: {len(sampling['prompts'])} prompts x {sampling['seeds']} seeds, {sampling['gen_length']} tokens",
        "",
        "| model | decoding | gen PPL (AR twin) | token entropy | repeated 4-grams | known words | NFE | "
        "edits (per sample) | edit precision | mean NLL change per edit |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name in names:
        for variant, e in results["models"][name]["sampling"].items():
            p = e.get("edit_precision")
            edits = f"{p['edits']} ({p['edits_per_sample']:.1f})" if p else "–"
            precision = f"{p['precision']:.1%}" if p and p["edits"] else "–"
            change = f"{p['mean_nll_change']:+.2f}" if p and p["edits"] else "–"
            lines.append(f"| {name} | {variant} | {e['gen_ppl_under_ar']:.1f} | {e['token_entropy']:.2f} | "
                         f"{e['repeated_4gram_share']:.1%} | {e['known_word_share']:.1%} | {e['nfe_per_sample']:.0f} | "
                         f"{edits} | {precision} | {change} |")
    return "\n".join(lines) + "\n"


# -- the model card ------------------------------------------------------------------------------------------

CARD = """---
license: mit
library_name: transformers
tags: [diffusion-canvas, shakespeare, masked-diffusion, token-editing, uniform-state]
---

# {name}

The built-in diffusion model (``canvas-diffusion``) trained further to also **correct wrong tokens**, not
only fill masks: random tokens are mixed in with the masks during training, as LLaDA 2.1 trains
token-to-token editing and uniform-state models (DiffusionGemma) train renoising. In the app it rewrites
tokens it already wrote (Revision: token editing τ) and settles a canvas that starts as random tokens
(Noise: random tokens). Same architecture, tokenizer, size and AR twin as ``canvas-diffusion``
({params:.1f}M parameters, bidirectional CanvasLM, context {context}).

## Training

| | |
| --- | --- |
| start | ``{init_from}`` (the shipped ``canvas-diffusion``'s checkpoint) |
| objective | ``dlm_core.train.corruption_loss``: per sequence t ~ U(0, 1] (stratified), corruption rate p = t; {mask_only:.0%} of sequences are corrupted by masking alone, the others replace each corrupted token by a uniformly random ordinary token with probability u ~ U(0, 1), else by [MASK]; cross-entropy of the original token at every position, corrupted ones weighted 1/p |
| data | the training plays of ``runs/data`` (as ``canvas-diffusion``), windows of {context} tokens |
| compute | {steps:,} optimiser steps, {tokens:,} tokens, {hours:.2f} h on {threads} CPU thread{plural}, lr {lr:g} (warm-up {warmup}, cosine over {decay}), bf16 autocast |
| checkpoint | ``best.pt``: the lowest held-out objective loss, {best:.4f} nats/token (fixed seed; this objective, not comparable with the masked-diffusion loss){checkpoint_note} |
| weights | ``model.safetensors``, float16 |

## Evaluation

{tables}
What the columns mean (``dlm_core/edit_eval.py``): the ELBO is the masked-diffusion bound on held-out
windows (lower is better). Random r%: each position replaced with probability r by a random ordinary
token, no masks, one forward pass; recovery = replaced positions whose top-1 prediction is the original
token; false edits = clean positions whose top-1 is not the token shown; CE = cross-entropy of the
original token (nats) at replaced, clean and all positions. Sampling: the app's settings (temperature 1,
top-p 0.95, order randomness {order:g}, blocks of {block}, one token per step), the same prompts and
seeds for both models; gen PPL is the perplexity of the generated region under the AR twin
``canvas-ar``. Edits: the last edit at a position whose token survives to the final text; precision =
the share of those whose revert raises the AR twin's NLL of the text (i.e. the edit lowered it); mean
NLL change per edit in nats (negative = the edits made the text likelier). Uniform: random-token
canvas, temperature {t_max:g} → {t_min:g} (DiffusionGemma's schedule; the mask-based rows sample at
temperature 1, so their perplexities are not at matched temperature), steps: {uniform_steps}, entropy
bound γ as named.

Findings (from the tables above):

{findings}

## Reproduce

```bash
python -m dlm_core.train prepare --data runs/data
python -m dlm_core.train train {train_args}
python -m dlm_core.train export --checkpoint {out}/best.pt --data runs/data --out assets/{name}
{eval_command}
```

The evaluation took {eval_minutes:.1f} minutes here on one CPU thread (a 2-core machine shared with a training run).
The training log of the run is ``runs/canvas-edit/log.jsonl``.

Load it: ``dlm_core.models.load_canvas("assets/{name}")``, or ``transformers.AutoModel.from_pretrained``
once ``dlm_core.models.register_auto_classes()`` has run.
"""


def train_command(args: dict) -> str:
    """The ``python -m dlm_core.train train`` flags that reproduce a run (from its ``training.json``)."""
    flags = []
    for key, value in args.items():
        if key in ("command", "func") or value is None:
            continue
        flag = "--" + key.replace("_", "-")
        if isinstance(value, bool):
            flags.append(flag if value else "--no-" + key.replace("_", "-"))
        else:
            flags.append(f"{flag} {value}")
    return " ".join(flags)


def findings(results: dict, model: str, baseline: str | None) -> str:
    """Comparisons read off the results, one bullet each."""
    models = results["models"]
    lines = []
    names = [model] + ([baseline] if baseline in models else [])
    for rate in results["data"]["rates"]:
        key = f"random_{rate:g}"
        parts = [f"{name}: recovery {models[name]['likelihood'][key]['recovery_accuracy']:.1%}, false edits "
                 f"{models[name]['likelihood'][key]['false_edit_rate']:.1%}" for name in names]
        lines.append(f"* {rate:.0%} random tokens: " + "; ".join(parts) + ".")
    lines.append("* Masked-diffusion ELBO: " + "; ".join(
        f"{name} {models[name]['likelihood']['mask_elbo_bits_per_char']:.3f} bits/char" for name in names) + ".")
    for name in names:
        sampling = models[name]["sampling"]
        edits = [f"τ {v['settings']['edit_threshold']:g}: {v['edit_precision']['edits_per_sample']:.1f} edits/sample, "
                 + (f"precision {v['edit_precision']['precision']:.0%}" if v["edit_precision"]["edits"] else "no edits")
                 for v in sampling.values() if "edit_precision" in v]
        lines.append(f"* {name}, token editing: " + "; ".join(edits) + ".")
        uniform = [f"{variant}: gen PPL {v['gen_ppl_under_ar']:.0f}, known words {v['known_word_share']:.0%}, "
                   f"token entropy {v['token_entropy']:.2f}" for variant, v in sampling.items() if variant.startswith("uniform")]
        lines.append(f"* {name}, random-token canvases: " + "; ".join(uniform) + f" (mask-based at temperature 1: gen PPL "
                     f"{sampling['mask']['gen_ppl_under_ar']:.0f}, known words {sampling['mask']['known_word_share']:.0%}, "
                     f"token entropy {sampling['mask']['token_entropy']:.2f}).")
    return "\n".join(lines)


def write_card(folder: Path, results: dict, baseline: str | None, seconds: float, checkpoint_note: str = "") -> None:
    """``README.md`` of the edit model's folder, every number from ``results`` and its ``training.json``."""
    config = json.loads((folder / "config.json").read_text())
    training = json.loads((folder / "training.json").read_text())
    args = training["args"]
    hidden, layers, mlp = config["hidden_size"], config["num_hidden_layers"], config["intermediate_size"]
    params = config["vocab_size"] * hidden + layers * (4 * hidden**2 + 3 * hidden * mlp + 2 * hidden) + hidden
    mask_settings = results["models"][folder.name]["sampling"]["mask"]["settings"]
    uniform = next(v["settings"] for k, v in results["models"][folder.name]["sampling"].items() if k.startswith("uniform"))
    text = CARD.format(
        name=folder.name, params=params / 1e6, context=config["max_position_embeddings"],
        init_from=args.get("init_from"), mask_only=args.get("mask_only_fraction", 0.5), steps=training["step"],
        tokens=training["tokens"], hours=training["seconds"] / 3600, threads=args.get("threads"),
        plural="" if args.get("threads") == 1 else "s", lr=args["lr"],
        warmup=args["warmup"], decay=args["decay_steps"], best=training["best"], checkpoint_note=checkpoint_note,
        tables=markdown(results).split("\n", 2)[2].replace("\n## ", "\n### "), order=mask_settings["order_temperature"],
        block=mask_settings["block_length"] or mask_settings["gen_length"], t_max=uniform["temperature"],
        t_min=uniform["final_temperature"], uniform_steps=uniform["steps"] or "one per token",
        findings=findings(results, folder.name, baseline), train_args=train_command(args), out=args["out"],
        eval_command=results["command"], eval_minutes=seconds / 60,
    )
    (folder / "README.md").write_text(text)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m dlm_core.edit_eval", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default=str(ASSETS_DIR / "canvas-edit"), help="the diffusion model trained to edit")
    p.add_argument("--baseline", default=str(ASSETS_DIR / "canvas-diffusion"), help="compared with (empty: none)")
    p.add_argument("--ar", default=str(ASSETS_DIR / "canvas-ar"), help="the AR twin (scorer)")
    p.add_argument("--data", default="runs/data", help="output of `python -m dlm_core.train prepare`")
    p.add_argument("--windows", type=int, default=32, help="held-out windows")
    p.add_argument("--window", type=int, default=128, help="tokens per window")
    p.add_argument("--samples", type=int, default=8, help="Monte-Carlo draws of t per window (ELBO)")
    p.add_argument("--rates", type=float, nargs="+", default=list(DEFAULT_RATES), help="random-token rates")
    p.add_argument("--taus", type=float, nargs="+", default=list(DEFAULT_TAUS), help="edit thresholds")
    p.add_argument("--prompts", type=int, default=len(SAMPLE_PROMPTS), help="how many of the sample prompts")
    p.add_argument("--seeds", type=int, default=2)
    p.add_argument("--gen-length", type=int, default=64)
    p.add_argument("--gen-block", type=int, default=32, help="block length of mask-based decoding (0 = one)")
    p.add_argument("--uniform-steps", type=int, default=0, help="uniform-state steps (0 = one per token)")
    p.add_argument("--uniform-gamma", type=float, nargs="+", default=[0.1, 0.5],
                   help="uniform-state entropy bounds (one variant each; 0.1 is DiffusionGemma's default)")
    p.add_argument("--uniform-t-max", type=float, default=0.8)
    p.add_argument("--uniform-t-min", type=float, default=0.4)
    p.add_argument("--uniform-stop", type=float, default=None, help="stop_confidence (default: off)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", default=None)
    p.add_argument("--markdown", default=None)
    p.add_argument("--card", action="store_true", help="write README.md into the --model folder from the results")
    p.add_argument("--checkpoint-note", default="", help="a sentence added to the card's checkpoint row")
    return p


def main(argv: list[str] | None = None, load: Callable = load_canvas) -> dict:
    args = parser().parse_args(argv)
    for name in ("windows", "window", "samples", "prompts", "seeds", "gen_length"):
        if getattr(args, name) < 1:
            raise SystemExit(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if not all(0 < r <= 1 for r in args.rates) or not all(0 < t <= 1 for t in args.taus):
        raise SystemExit("--rates and --taus must lie in (0, 1]")
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    models = {Path(args.model).name: load(args.model)}
    if args.baseline:
        models[Path(args.baseline).name] = load(args.baseline)
    results, text = report(models, load(args.ar), Path(args.data), args)
    results["command"] = "python -m dlm_core.edit_eval " + shlex.join(sys.argv[1:] if argv is None else argv)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    if args.markdown:
        Path(args.markdown).write_text(text)
    if args.card:
        write_card(Path(args.model), results, Path(args.baseline).name if args.baseline else None,
                   time.perf_counter() - start, args.checkpoint_note)
    print(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
