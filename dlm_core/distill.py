"""Parallel-decoding training for the built-in diffusion model: ``python -m dlm_core.distill``.

Certainty-forcing self-distillation (dParallel, Chen et al. 2025). A masked diffusion model decodes
slowly because it is rarely *sure* of a masked position, even where its own argmax is right; the
threshold rule (Fast-dLLM) then commits about one token per forward pass. dParallel fine-tunes the
model on its own generations so that it becomes confident, early, on the tokens it already gets
right:

* ``generate``  the shipped model (the teacher) writes continuations of prompts taken from the
  training plays, decoded the way the app decodes (``TEACHER_SAMPLING``). Shards of 64 sequences
  under ``--out``; rerunning continues with the next shard, each seeded by its index.
* ``train``     the student starts from the teacher's weights and minimises, per training example,

      L = CE(masked positions of the active block) + beta * H(masked positions the student already
          predicts correctly)

  where H is the entropy of the student's distribution. The canvas is laid out as at inference
  (semi-autoregressive blocks of ``--block`` slots, LLaDA): the prompt and the blocks before the
  active one are clean, the active block is masked at a rate t ~ U(0, 1], the blocks after it are
  fully masked. Each example is used twice with *complementary* masks (dParallel), so every token
  of the active block receives a loss once. Seeded, resumable (``checkpoint.pt``), with a progress
  bar and held-out metrics: the distillation loss on teacher generations from held-out plays, the
  share of masked slots the student would commit under threshold 0.9, and the real-text
  masked-diffusion loss of ``dlm_core.train`` (so quality drift on Shakespeare itself is visible).
* ``train --objective sdtt``  one round of self-distillation through time (SDTT, Deschenaux &
  Gulcehre 2025) for fixed-k block decoding: a student that commits ``--student-k`` slots a pass
  learns, by KL, what the frozen teacher (the starting model) writes in two passes of
  ``--teacher-k``; each masked slot of the active block targets the teacher's distribution at the
  pass that committed it, the rest the second pass's (``teacher_targets``). Data: windows of the
  training plays, laid out by ``student_canvas``. Simplified: one round (SDTT runs several, each
  halving the steps), and the teacher decodes as the app does (top-p, order temperature).
* ``export``    the best checkpoint -> a model folder (``dlm_core.train.export``).

Simplifications, said plainly: dParallel's teacher decodes greedily on math prompts; ours samples
at the app's settings, since our product samples; the CE term uses the plain mean over masked
positions (no 1/t weight), as dParallel's certainty-forcing loss does.
"""

from __future__ import annotations

import argparse
import json
import time
from collections import deque
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .models.builtin import BUILTIN_ORDER_TEMPERATURE, load_canvas
from .models.canvas_lm import CanvasLM
from .sampler.config import SamplerConfig
from .sampler.loop import denoise_batch
from .sampler.prompt import canvas_prompt
from .sampler.sampling import truncate
from .sampler.strategies import ordered_top_k
from .train import TrainingRun, diffusion_loss, export, learning_rate, load_tokenizer, sample_batch

SHARD_SIZE = 64
PROMPT_LENGTHS = (8, 16, 32, 64)
CONFIDENT = 0.9  # Fast-dLLM's default threshold: the held-out "would commit" share uses it
BEST_BY = {"certainty": "ce", "sdtt": "kl"}  # the held-out metric that picks best.pt, per objective

# How the teacher writes: the app's default decoding of the built-in model, with Fast-dLLM's dual
# cache so that generation is affordable on a CPU (block-level approximation, refreshed per block).
TEACHER_SAMPLING = dict(
    strategy="low_confidence", block_length=32, temperature=1.0, top_p=0.95,
    order_temperature=BUILTIN_ORDER_TEMPERATURE, cache="dual",
)


# --------------------------------------------------------------------------------- teacher data


def teacher_shard(
    model, stream: np.ndarray, index: int, gen_length: int,
    shard_size: int = SHARD_SIZE, prompt_lengths: tuple[int, ...] = PROMPT_LENGTHS,
) -> np.ndarray:
    """One shard: ``shard_size`` canvases (prompt + teacher continuation) as int32, prompt length first.

    Row layout: [prompt_length, token_0, ..., token_{P+G-1}]; P cycles through ``prompt_lengths`` by
    shard index, prompts are windows of ``stream`` drawn with seed ``index``, decoding uses seed ``index``.
    """
    rng = np.random.default_rng(index)
    prompt_length = prompt_lengths[index % len(prompt_lengths)]
    starts = rng.integers(0, stream.size - prompt_length, size=shard_size)
    prompts = [
        canvas_prompt(model, [int(t) for t in stream[s : s + prompt_length]] + [model.mask_id] * gen_length,
                      range(prompt_length, prompt_length + gen_length))
        for s in starts
    ]
    config = SamplerConfig(gen_length=0, steps=gen_length // 2, seed=index, **TEACHER_SAMPLING)
    final = deque(denoise_batch(model, prompts, config), maxlen=1)[0]  # run to the end, keep the last step
    rows = np.stack([state.tokens for state in final]).astype(np.int32)
    return np.concatenate([np.full((shard_size, 1), prompt_length, np.int32), rows], axis=1)


def generate(args) -> None:
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    model = load_canvas(args.teacher, device=args.device)
    from tqdm import tqdm

    for split, count, offset in (("validation", args.validation_shards, 1_000_000), ("train", args.shards, 0)):
        stream = np.load(Path(args.data) / f"{split}.npy")
        for i in tqdm(range(count), desc=f"teacher {split}", unit="shard"):
            path = out / f"{split}-{i:04d}.npy"
            if path.exists():
                continue
            shard = teacher_shard(model, stream, offset + i, args.gen_length, args.shard_size, tuple(args.prompt_lengths))
            np.save(path.with_suffix(".tmp.npy"), shard)
            path.with_suffix(".tmp.npy").replace(path)


def load_shards(folder: Path, split: str) -> list[np.ndarray]:
    """Rows of every shard of a split, grouped by prompt length (rows of one array share a length)."""
    return [np.load(path) for path in sorted(folder.glob(f"{split}-*.npy")) if ".tmp" not in path.name]


# ------------------------------------------------------------------------------------------ loss


def active_block(
    batch: int, length: int, prompt_length: int, block: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """(in the active block, after it), each B x L: one block per row, k ~ U{blocks after the prompt}
    (LLaDA's semi-autoregressive layout: what comes before it is clean, what comes after it masked)."""
    blocks = (length - prompt_length) // block
    start = prompt_length + torch.randint(0, blocks, (batch,), generator=generator) * block
    position = torch.arange(length)
    in_block = (position >= start[:, None]) & (position < start[:, None] + block)
    return in_block, position >= start[:, None] + block


def semi_ar_canvas(
    rows: torch.Tensor, prompt_length: int, block: int, mask_id: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Two complementary noisy canvases per row, laid out as at inference.

    Returns (noisy 2B x L, masked 2B x L: slots of the active block that are masked and scored,
    targets 2B x L). Per row: active block k ~ U{blocks}, t ~ U(0, 1], mask m ~ Bernoulli(t) in the
    block; copy one masks m, copy two masks the block's other slots (1 - m); later blocks are masks.
    """
    batch, length = rows.shape
    in_block, after = active_block(batch, length, prompt_length, block, generator)
    t = torch.rand(batch, generator=generator).clamp(min=1.0 / block)
    draw = torch.rand(batch, length, generator=generator) < t[:, None]
    masked = torch.cat((in_block & draw, in_block & ~draw))
    hidden = masked | torch.cat((after, after))
    targets = torch.cat((rows, rows))
    noisy = torch.where(hidden, torch.full_like(targets, mask_id), targets)
    return noisy, masked, targets


def certainty_forcing_loss(
    model: CanvasLM, noisy: torch.Tensor, masked: torch.Tensor, targets: torch.Tensor, beta: float
) -> tuple[torch.Tensor, dict[str, float]]:
    """CE over scored masked slots + beta * entropy over those the student already gets right."""
    logits = model(noisy).logits.float()[masked]  # N x V
    gold = targets[masked]
    cross_entropy = F.cross_entropy(logits, gold)
    log_probs = logits.log_softmax(-1)
    entropy = -(log_probs.exp() * log_probs).sum(-1)
    correct = logits.argmax(-1) == gold
    # Certainty forcing only where the student is right: sharpening a wrong guess would teach it to
    # commit errors early, which is exactly what a threshold rule must avoid.
    forced = (entropy * correct).sum() / max(1, int(masked.sum()))
    confident = log_probs.max(-1).values.exp() > CONFIDENT
    stats = {
        "ce": cross_entropy.item(),
        "entropy_correct": (entropy[correct].mean().item() if correct.any() else 0.0),
        "accuracy": correct.float().mean().item(),
        "confident": confident.float().mean().item(),
        "confident_correct": (confident & correct).float().mean().item(),
    }
    return cross_entropy + beta * forced, stats


# ------------------------------------------------------------- SDTT: two teacher passes in one


def student_canvas(
    rows: torch.Tensor, prompt_length: int, block: int, student_k: int, mask_id: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """One noisy canvas per row, in a state the student meets when it decodes ``student_k`` slots a pass.

    Returns (noisy B x L, masked B x L: the active block's masked slots). Per row: active block
    k ~ U{blocks}; j * ``student_k`` of its slots are clean (j ~ U{0 .. block / student_k - 1}), chosen
    uniformly at random (SDTT's forward process; at inference the clean ones are the confident ones);
    the prompt and earlier blocks are clean, later blocks are masks (LLaDA's semi-autoregressive layout).
    """
    batch, length = rows.shape
    in_block, after = active_block(batch, length, prompt_length, block, generator)
    clean = torch.randint(0, block // student_k, (batch,), generator=generator) * student_k
    # A random order of the active block's slots (slots outside it sort last): the first `clean` stay clean.
    order = torch.rand(batch, length, generator=generator).masked_fill(~in_block, 2.0).argsort(1).argsort(1)
    masked = in_block & (order >= clean[:, None])
    return rows.masked_fill(masked | after, mask_id), masked


def commit_pass(
    logits: torch.Tensor, masked: torch.Tensor, k: int, generator: torch.Generator,
    top_p: float = TEACHER_SAMPLING["top_p"], order_temperature: float = BUILTIN_ORDER_TEMPERATURE,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One decoding pass as the app makes it with a fixed ``k`` per pass (``low_confidence``): sample
    every masked slot (temperature 1, top-p), score it by its sampled token's probability, commit ``k``
    slots per row by ``strategies.ordered_top_k`` at ``order_temperature`` (as ``rank_select`` does).
    Returns (tokens B x L, committed B x L)."""
    draws = torch.multinomial(truncate(logits[masked], 1.0, None, top_p).softmax(-1), 1, generator=generator)
    tokens = torch.zeros(masked.shape, dtype=torch.long, device=logits.device)
    tokens[masked] = draws.squeeze(-1)
    confidence = logits.softmax(-1).gather(-1, tokens.unsqueeze(-1)).squeeze(-1).double()

    def uniform() -> torch.Tensor:
        return torch.rand(masked.shape, generator=generator, dtype=torch.float64)

    return tokens, ordered_top_k(confidence, masked, torch.full((masked.shape[0],), k), order_temperature, uniform)


@torch.no_grad()
def teacher_targets(
    teacher: CanvasLM, noisy: torch.Tensor, masked: torch.Tensor, teacher_k: int, generator: torch.Generator
) -> torch.Tensor:
    """SDTT's target (Deschenaux & Gulcehre 2025): the teacher decodes two passes of ``teacher_k`` slots;
    a slot committed in the first pass targets the teacher's first-pass distribution, every other slot
    the second pass's, which has seen the first pass's tokens. Log-probabilities, B x L x V."""
    first = teacher(noisy).logits.float()
    tokens, committed = commit_pass(first, masked, teacher_k, generator)
    second = teacher(torch.where(committed, tokens, noisy)).logits.float()
    return torch.where(committed.unsqueeze(-1), first, second).log_softmax(-1)


def sdtt_loss(
    student: CanvasLM, noisy: torch.Tensor, masked: torch.Tensor, target: torch.Tensor
) -> tuple[torch.Tensor, dict[str, float]]:
    """KL(teacher two-pass target || student one pass), mean over the active block's masked slots (the
    divergence SDTT found best)."""
    log_q = student(noisy).logits.float()[masked].log_softmax(-1)
    log_p = target[masked]
    kl = (log_p.exp() * (log_p - log_q)).sum(-1).mean()
    stats = {
        "kl": kl.item(),
        "agree": (log_q.argmax(-1) == log_p.argmax(-1)).float().mean().item(),
        "confident": (log_q.max(-1).values.exp() > CONFIDENT).float().mean().item(),
    }
    return kl, stats


# -------------------------------------------------------------------------------------- training


def batches(shards: list[np.ndarray], real: np.ndarray, args, rng: np.random.Generator):
    """(prompt_length, rows): teacher continuations (one shard, so one prompt length, per batch) with
    probability ``--teacher-fraction``, else windows of real training text of the same layout."""
    if shards and rng.random() < args.teacher_fraction:
        shard = shards[int(rng.integers(len(shards)))]
        rows = shard[rng.integers(0, shard.shape[0], size=args.batch)]
        return int(rows[0, 0]), torch.from_numpy(rows[:, 1:].astype(np.int64))
    prompt_length = args.prompt_lengths[int(rng.integers(len(args.prompt_lengths)))]
    return prompt_length, sample_batch(real, args.batch, prompt_length + args.gen_length, rng)


@torch.no_grad()
def held_out(
    model: CanvasLM, shards: list[np.ndarray], real: np.ndarray, args, mask_id: int, teacher: CanvasLM | None = None
) -> dict[str, float]:
    """Fixed-seed held-out metrics (comparable across steps and across runs): the objective's own
    (certainty forcing: on teacher continuations of held-out plays; SDTT: the two-pass KL on held-out
    plays) and the real-text masked-diffusion loss of ``dlm_core.train``."""
    model.eval()
    device = next(model.parameters()).device
    generator = torch.Generator().manual_seed(4321)
    totals: dict[str, float] = {}
    count = 0
    for prompt_length, rows in held_out_batches(shards, real, args):
        if args.objective == "sdtt":
            noisy, masked = (t.to(device) for t in student_canvas(rows, prompt_length, args.block, args.student_k, mask_id, generator))
            target = teacher_targets(teacher, noisy, masked, args.teacher_k, torch.Generator(device).manual_seed(count))
            _, stats = sdtt_loss(model, noisy, masked, target)
        else:
            canvases = semi_ar_canvas(rows, prompt_length, args.block, mask_id, generator)
            _, stats = certainty_forcing_loss(model, *(t.to(device) for t in canvases), 0.0)
        for key, value in stats.items():
            totals[key] = totals.get(key, 0.0) + value
        count += 1
    metrics = {f"val_{key}": round(value / count, 4) for key, value in totals.items()}
    rng = np.random.default_rng(1234)
    context = min(model.config.max_position_embeddings, real.size - 1)  # the windows dlm_core.train scores
    real_loss = 0.0
    for _ in range(args.eval_batches):
        tokens = sample_batch(real, max(1, 4096 // context), context, rng)
        real_loss += diffusion_loss(model, tokens.to(device), mask_id, generator)[0].item()
    metrics["val_real_diffusion_loss"] = round(real_loss / args.eval_batches, 4)
    model.train()
    return metrics


def held_out_batches(shards: list[np.ndarray], real: np.ndarray, args):
    """(prompt_length, rows) of the held-out set: every teacher validation row (certainty forcing), or
    ``--eval-batches`` fixed windows of the held-out plays, prompt lengths in turn (SDTT)."""
    if args.objective == "sdtt":
        rng = np.random.default_rng(99)
        for i in range(args.eval_batches):
            prompt_length = args.prompt_lengths[i % len(args.prompt_lengths)]
            yield prompt_length, sample_batch(real, args.batch, prompt_length + args.gen_length, rng)
        return
    for shard in shards:
        for lo in range(0, shard.shape[0], args.batch):
            yield int(shard[0, 0]), torch.from_numpy(shard[lo : lo + args.batch, 1:].astype(np.int64))


def train(args) -> None:
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    data, out = Path(args.teacher_data), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = load_tokenizer(Path(args.data))
    mask_id = tokenizer.mask_token_id
    train_shards, val_shards = load_shards(data, "train"), load_shards(data, "validation")
    if (args.objective == "certainty" and not val_shards) or (args.teacher_fraction > 0 and not train_shards):
        raise SystemExit(f"no teacher data under {data}: run `python -m dlm_core.distill generate` first")
    real_train, real_validation = (np.load(Path(args.data) / f"{split}.npy") for split in ("train", "validation"))
    device = torch.device(args.device)
    model = load_canvas(args.init, device=device).model.float().train()
    # SDTT: the teacher is the starting model, frozen (one round; a next round starts from this one's export).
    teacher = load_canvas(args.init, device=device).model.float().eval() if args.objective == "sdtt" else None
    if teacher is not None:
        teacher.requires_grad_(False)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, betas=(0.9, 0.95), weight_decay=0.0)
    state = {"step": 0, "tokens": 0, "seconds": 0.0, "best": float("inf")}
    rng = np.random.default_rng(args.seed)
    generator = torch.Generator().manual_seed(args.seed)
    run = TrainingRun(model, optimizer, state, rng, generator)
    if run.resume(out):
        print(f"resumed from step {state['step']}")

    def save(path: Path) -> None:
        run.save(path, args)

    from tqdm import tqdm

    log = (out / "log.jsonl").open("a")
    if state["step"] == 0:
        record = {"step": 0, **held_out(model, val_shards, real_validation, args, mask_id, teacher)}
        log.write(json.dumps(record) + "\n")
        log.flush()
        print(json.dumps(record))
    progress = tqdm(initial=state["step"], total=args.steps, unit="step", dynamic_ncols=True, mininterval=10)
    session_start = time.time()
    while state["step"] < args.steps and not (args.minutes and time.time() - session_start > 60 * args.minutes):
        started = time.time()
        prompt_length, rows = batches(train_shards, real_train, args, rng)
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(state["step"], args)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.bf16):
            if args.objective == "sdtt":
                noisy, masked = (t.to(device) for t in student_canvas(rows, prompt_length, args.block, args.student_k, mask_id, generator))
                # Seeded by step, so a resumed run draws the same teacher passes.
                passes = torch.Generator(device).manual_seed(args.seed * 1_000_003 + state["step"])
                loss, stats = sdtt_loss(model, noisy, masked, teacher_targets(teacher, noisy, masked, args.teacher_k, passes))
            else:
                noisy, masked, targets = (t.to(device) for t in semi_ar_canvas(rows, prompt_length, args.block, mask_id, generator))
                loss, stats = certainty_forcing_loss(model, noisy, masked, targets, args.beta)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        state["step"] += 1
        state["tokens"] += int(masked.sum())
        state["seconds"] += time.time() - started
        progress.update(1)
        progress.set_postfix(loss=f"{loss.item():.3f}", conf=f"{stats['confident']:.2f}", refresh=False)
        if state["step"] % args.eval_every == 0 or state["step"] == args.steps:
            record = {"step": state["step"], "tokens": state["tokens"], "seconds": round(state["seconds"], 1),
                      f"train_{BEST_BY[args.objective]}": round(stats[BEST_BY[args.objective]], 4), **held_out(model, val_shards, real_validation, args, mask_id, teacher)}
            log.write(json.dumps(record) + "\n")
            log.flush()
            progress.write(json.dumps(record))
            # Best = lowest held-out CE (certainty must not be bought with wrong guesses) or KL to the teacher.
            if record[f"val_{BEST_BY[args.objective]}"] < state["best"]:
                state["best"] = record[f"val_{BEST_BY[args.objective]}"]
                save(out / "best.pt")
            save(out / "checkpoint.pt")
            train_shards = load_shards(data, "train")  # the teacher may still be writing shards
    save(out / "checkpoint.pt")
    progress.close()


# ------------------------------------------------------------------------------------ model card

CARD = """---
license: mit
library_name: transformers
tags: [diffusion-canvas, shakespeare, masked-diffusion, parallel-decoding]
---

# {name}

The built-in diffusion model (``canvas-diffusion``) after parallel-decoding training: certainty-forcing
self-distillation (dParallel, Chen et al. 2025), ``python -m dlm_core.distill``. Same architecture,
tokenizer and size as ``canvas-diffusion`` (5.9M parameters, bidirectional CanvasLM, context 640).

## Training

| | |
| --- | --- |
| start | ``{init}`` (the shipped model) |
| objective | cross-entropy on the masked slots of the active block + {beta:g} x entropy of the slots the student already predicts correctly; semi-autoregressive blocks of {block}, complementary masks |
| data | {teacher_fraction:.0%} of batches: continuations of 256 tokens written by the shipped model at the app's sampling ({teacher_rows} continuations from the training plays, ``runs/distill-data``); the rest: windows of the training plays themselves |
| compute | {steps:,} steps of {batch} examples x 2 masks, {tokens:,} scored tokens, {hours:.2f} h on 1 CPU thread |
| reproduce | ``python -m dlm_core.distill generate --shards {shards}`` (the shards are committed), then ``python -m dlm_core.distill train`` (resumable: rerunning continues from ``runs/{run}/checkpoint.pt``) and ``python -m dlm_core.distill export`` |

Why this method: of the field's three (certainty forcing, SDTT, consistency distillation), certainty
forcing costs one student forward per example and needs the teacher only once, to write the data;
SDTT and consistency distillation run the teacher at every training step and over several rounds,
which a 2-core CPU cannot afford in one session.

{ablations}

## Held-out metrics (``runs/{run}/log.jsonl``, fixed seeds)

| | start | best (step {best_step}) |
| --- | ---: | ---: |
| distillation CE on held-out teacher continuations (nats) | {start[val_ce]:.3f} | {best[val_ce]:.3f} |
| masked slots the model would commit at confidence > 0.9 | {start[val_confident]:.1%} | {best[val_confident]:.1%} |
| ... of which correct | {start[val_confident_correct]:.1%} | {best[val_confident_correct]:.1%} |
| masked-diffusion loss on held-out plays (nats/token) | {start[val_real_diffusion_loss]:.3f} | {best[val_real_diffusion_loss]:.3f} |

## Decoding: the quality-parallelism frontier (``python benchmarks/frontier.py``)

{frontier}

{decision}
"""


def frontier_rows(report: dict, models: tuple[str, ...]) -> str:
    """The frontier rows of ``models`` (and the AR twin) as a markdown table."""
    lines = ["| model | setting | tokens/forward | gen PPL (AR twin) | token entropy | repeated 4-grams | known words |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: |"]
    for row in [report["ar"], *(r for r in report["rows"] if r["model"] in models)]:
        lines.append(f"| {row['model']} | {row['setting']} | {row['tokens_per_forward']:.2f} | {row['gen_ppl_under_ar']:.1f} | "
                     f"{row['token_entropy']:.2f} | {row['repeated_4gram_share']:.1%} | {row['known_word_share']:.1%} |")
    return "\n".join(lines)


def read_log(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def ablation_lines(run: Path) -> str:
    """One line per side run kept next to the main log (``log-<name>.jsonl``): first vs last record."""
    lines = []
    for path in sorted(run.glob("log-*.jsonl")):
        log = read_log(path)
        first, last = log[0], log[-1]
        lines.append(
            f"* ``{path.name}``: after {last['step']} steps, committable share {first['val_confident']:.1%} -> "
            f"{last['val_confident']:.1%}, real-text loss {first['val_real_diffusion_loss']:.3f} -> "
            f"{last['val_real_diffusion_loss']:.3f} nats (held-out teacher CE {first['val_ce']:.3f} -> {last['val_ce']:.3f})."
        )
    return ("Side runs (same metrics; ``log-pilot-teacher-only``: beta 1, lr 2e-4, one teacher shard and no real "
            "text; ``log-beta2``: beta 2 from this model):\n\n" + "\n".join(lines)) if lines else ""


def write_card(args) -> None:
    folder = Path(args.model)
    training = json.loads((folder / "training.json").read_text())
    log = read_log(Path(args.log))
    best = min(log, key=lambda record: record["val_ce"])
    report = json.loads(Path(args.frontier).read_text())
    meta = report["meta"]
    frontier = (f"{meta['length']} tokens, {len(meta['prompts'])} prompts x {meta['seeds']} seeds, temperature "
                f"{meta['temperature']:g}, top-p {meta['top_p']}, blocks of {meta['block']}, cache {meta['cache']}"
                f"{' (unless the row names another)' if len(meta.get('caches', [])) > 1 else ''}.\n\n"
                + frontier_rows(report, (Path(training["args"]["init"]).name, folder.name)))
    teacher_rows = sum(shard.shape[0] for shard in load_shards(Path(training["args"]["teacher_data"]), "train"))
    card = CARD.format(
        name=folder.name, init=training["args"]["init"], beta=training["args"]["beta"], block=training["args"]["block"],
        teacher_fraction=training["args"]["teacher_fraction"], teacher_rows=teacher_rows, shards=teacher_rows // SHARD_SIZE,
        steps=training["step"], batch=training["args"]["batch"], tokens=training["tokens"],
        hours=training["seconds"] / 3600, run=Path(training["args"]["out"]).name, start=log[0], best=best,
        best_step=best["step"], frontier=frontier, ablations=ablation_lines(Path(args.log).parent), decision=Path(args.decision).read_text().strip() if args.decision else "",
    )
    (folder / "README.md").write_text(card)
    print(f"wrote {folder / 'README.md'}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m dlm_core.distill", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    g = commands.add_parser("generate", help="teacher continuations (resumable shards)")
    g.add_argument("--teacher", default="assets/canvas-diffusion")
    g.add_argument("--data", default="runs/data")
    g.add_argument("--out", default="runs/distill-data")
    g.add_argument("--shards", type=int, default=24, help=f"training shards of {SHARD_SIZE} continuations")
    g.add_argument("--validation-shards", type=int, default=1)
    g.add_argument("--gen-length", type=int, default=256)
    g.add_argument("--shard-size", type=int, default=SHARD_SIZE)
    g.add_argument("--prompt-lengths", type=int, nargs="+", default=list(PROMPT_LENGTHS))
    g.add_argument("--device", default="cpu", help="torch device, e.g. cuda")
    g.add_argument("--threads", type=int, default=2)
    t = commands.add_parser("train", help="certainty-forcing or SDTT fine-tune (resumable)")
    t.add_argument("--objective", choices=tuple(BEST_BY), default="certainty",
                   help="certainty: dParallel certainty forcing; sdtt: one SDTT round (student_k per pass learns two teacher passes of teacher_k)")
    t.add_argument("--teacher-k", type=int, default=4, help="sdtt: slots the teacher commits per pass (it makes two)")
    t.add_argument("--student-k", type=int, default=8, help="sdtt: slots the student commits per pass (2 x teacher-k)")
    t.add_argument("--init", default="assets/canvas-diffusion")
    t.add_argument("--data", default="runs/data")
    t.add_argument("--teacher-data", default="runs/distill-data")
    t.add_argument("--out", default="runs/canvas-parallel")
    t.add_argument("--steps", type=int, default=1000)
    t.add_argument("--minutes", type=float, default=0, help="stop this session after N minutes (0 = no limit)")
    t.add_argument("--batch", type=int, default=8, help="teacher rows per step (each seen with 2 complementary masks)")
    t.add_argument("--block", type=int, default=32)
    t.add_argument("--gen-length", type=int, default=256, help="slots after the prompt in real-text examples")
    t.add_argument("--prompt-lengths", type=int, nargs="+", default=list(PROMPT_LENGTHS))
    t.add_argument("--teacher-fraction", type=float, default=0.5,
                   help="share of batches from teacher continuations; the rest are real training text")
    t.add_argument("--beta", type=float, default=0.5, help="weight of the certainty-forcing entropy term")
    t.add_argument("--lr", type=float, default=1e-4)
    t.add_argument("--warmup", type=int, default=50)
    t.add_argument("--decay-steps", type=int, default=1000)
    t.add_argument("--eval-every", type=int, default=100)
    t.add_argument("--eval-batches", type=int, default=4)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--device", default="cpu", help="torch device, e.g. cuda")
    t.add_argument("--threads", type=int, default=1)
    t.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=True)
    e = commands.add_parser("export", help="checkpoint -> model folder")
    e.add_argument("--checkpoint", default="runs/canvas-parallel/best.pt")
    e.add_argument("--data", default="runs/data")
    e.add_argument("--out", default="assets/canvas-parallel")
    c = commands.add_parser("card", help="write the model card from the training log and the frontier benchmark")
    c.add_argument("--model", default="assets/canvas-parallel")
    c.add_argument("--log", default="runs/canvas-parallel/log.jsonl")
    c.add_argument("--frontier", default="runs/frontier.json")
    c.add_argument("--decision", default="runs/canvas-parallel/decision.md", help="a markdown file with the measured decision (default model or not)")
    args = parser.parse_args(argv)
    {"generate": generate, "train": train, "export": export, "card": write_card}[args.command](args)


if __name__ == "__main__":
    main()
