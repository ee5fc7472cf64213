"""Train the built-in models from scratch: ``python -m dlm_core.train {prepare,train,export}``.

* ``prepare``  corpus -> byte-level BPE tokenizer (``tokenizer.json``) + token arrays, under ``--data``;
  ``--corpus shakespeare`` (the plays, ``runs/data``) or ``python`` (the interpreter's standard library,
  ``runs/code-data``, with a ``manifest.json`` of files and hashes; ``dlm_core.code_data``).
* ``train``    one model, ``--objective diffusion`` (LLaDA / MDLM masked diffusion), ``edit`` (masked
  diffusion plus random-token corruption, ``corruption_loss``: the model also learns to correct
  tokens) or ``ar`` (the autoregressive twin). Seeded, resumable (``--out`` holds ``checkpoint.pt``; rerunning the same
  command continues), logs loss and held-out metrics to ``log.jsonl``, keeps ``best.pt`` by held-out
  loss (early stopping for the AR twin), stops after ``--minutes`` / ``--tokens``.
* ``export``   a checkpoint -> a model folder (config.json, half-precision model.safetensors,
  tokenizer files) loadable with ``AutoModel.from_pretrained`` once ``dlm_core`` is imported.

The masked-diffusion objective (Nie et al. 2025, LLaDA, eq. 3; Sahoo et al. 2024, MDLM): sample
t ~ U(0, 1] per sequence, mask each token independently with probability t, and minimise
E_t [ (1/t) * sum over masked i of -log p(x_i | x_t) ] / L. This is an upper bound on the negative
log-likelihood; ``dlm_core.evaluate`` reports it in bits per character. We draw t stratified across
the batch (MDLM's low-discrepancy sampler) to cut the variance of the gradient.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .code_data import collect_stdlib, write_manifest
from .data import VALIDATION_PLAYS, load_plays, split_plays
from .models.canvas_lm import CanvasConfig, CanvasLM

EOS_TOKEN = "<|endoftext|>"
MASK_TOKEN = "<|mask|>"
PAD_TOKEN = "<|pad|>"
MIN_MASK_RATE = 1e-3  # LLaDA's eps: t is never exactly 0, so 1/t stays finite


# ---------------------------------------------------------------------------------------------- data


def train_tokenizer(texts: list[str], vocab_size: int):
    """Byte-level BPE (GPT-2 style: spaces and newlines are ordinary bytes, decode is exact)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOS_TOKEN, MASK_TOKEN, PAD_TOKEN],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        eos_token=EOS_TOKEN,
        mask_token=MASK_TOKEN,
        pad_token=PAD_TOKEN,
        model_max_length=1_000_000,
        clean_up_tokenization_spaces=False,
    )


def encode_plays(tokenizer, plays: dict[str, str]) -> tuple[np.ndarray, int]:
    """All plays as one token stream, each play followed by end-of-text; also the character count."""
    ids: list[int] = []
    for text in plays.values():
        ids.extend(tokenizer.encode(text, add_special_tokens=False))
        ids.append(tokenizer.eos_token_id)
    return np.asarray(ids, dtype=np.int32), sum(len(text) + 1 for text in plays.values())


CORPORA = {"shakespeare": "runs/data", "python": "runs/code-data"}  # corpus -> default data folder


def load_corpus(corpus: str, data_dir: Path) -> tuple[dict[str, str], dict[str, str], list[str]]:
    """(train, validation, held-out names) for a corpus; ``python`` also writes ``manifest.json`` under ``data_dir``."""
    if corpus == "shakespeare":
        train, validation = split_plays(load_plays())
        return train, validation, list(VALIDATION_PLAYS)
    if corpus == "python":
        stdlib = collect_stdlib()
        write_manifest(stdlib, data_dir / "manifest.json")
        train, validation = stdlib.split()
        return train, validation, list(validation)
    raise ValueError(f"corpus must be one of {sorted(CORPORA)}, got {corpus!r}")


def prepare(data_dir: Path, vocab_size: int, corpus: str = "shakespeare") -> None:
    # The stats keep the Shakespeare key names ("validation_plays", "plays") because dlm_core.evaluate reads
    # them; for the code corpus a "play" is one stdlib module (a path relative to the stdlib).
    train, validation, held_out = load_corpus(corpus, data_dir)
    tokenizer = train_tokenizer(list(train.values()), vocab_size)
    tokenizer.save_pretrained(data_dir / "tokenizer")
    stats = {"validation_plays": held_out, "vocab_size": len(tokenizer)}
    for split, plays in (("train", train), ("validation", validation)):
        ids, chars = encode_plays(tokenizer, plays)
        np.save(data_dir / f"{split}.npy", ids)
        stats[split] = {"plays": len(plays), "tokens": int(ids.size), "chars": chars}
    (data_dir / "stats.json").write_text(json.dumps(stats, indent=2))
    print(json.dumps(stats, indent=2))


def load_tokenizer(data_dir: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(data_dir / "tokenizer")


# ------------------------------------------------------------------------------------------- losses


def diffusion_loss(
    model: CanvasLM, tokens: torch.Tensor, mask_id: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """LLaDA/MDLM masked-diffusion loss for a batch; returns (mean loss per token, per-sequence sums).

    Per sequence: t stratified in (0, 1], mask rate p = (1 - eps) t + eps, loss = sum over masked
    positions of CE / p. Dividing by the sequence length gives the per-token ELBO estimate.
    """
    batch, length = tokens.shape
    offsets = torch.rand((), generator=generator)
    t = ((torch.arange(batch, dtype=torch.float32) + offsets) / batch).clamp(max=1.0)
    t = t[torch.randperm(batch, generator=generator)]
    mask_rate = (1 - MIN_MASK_RATE) * t + MIN_MASK_RATE
    masked = torch.rand(batch, length, generator=generator) < mask_rate[:, None]
    # The draws come from a CPU generator (same stream on any device); the model may sit on a GPU.
    mask_rate, masked = mask_rate.to(tokens.device), masked.to(tokens.device)
    noisy = torch.where(masked, torch.full_like(tokens, mask_id), tokens)
    logits = model(noisy).logits.float()
    token_loss = F.cross_entropy(logits.transpose(1, 2), tokens, reduction="none")
    weighted = (token_loss * masked / mask_rate[:, None]).sum(dim=1)
    return weighted.sum() / (batch * length), weighted


def corruption_loss(
    model: CanvasLM,
    tokens: torch.Tensor,
    mask_id: int,
    noise_ids: torch.Tensor,
    generator: torch.Generator,
    mask_only_fraction: float = 0.5,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Masking plus random-token corruption, so the model also learns to *correct* visible tokens.

    LLaDA 2.1 trains token-to-token editing next to mask-to-token filling, and uniform-state models
    (DiffusionGemma, UDLM) train on canvases of random tokens; this objective mixes both into the
    masked-diffusion one. Per sequence: t stratified in (0, 1] as in ``diffusion_loss``, corruption rate
    p = (1 - eps) t + eps, and a uniform share u (0 for ``mask_only_fraction`` of the sequences, else
    U(0, 1)). Each token is corrupted with probability p; a corrupted token becomes a random token of
    ``noise_ids`` with probability u, else [MASK]. The loss is the cross-entropy of the original token
    at every position: corrupted ones weighted 1 / p (as in the ELBO), kept ones weighted 1, because a
    visible token may be right or replaced and the model must tell which (that is what editing is).
    Simplification: with u > 0 this is a denoising objective, not a likelihood bound; the held-out
    figures of ``dlm_core.evaluate`` stay the masked-diffusion ELBO (u = 0). Returns (mean loss per
    token, per-sequence sums).
    """
    batch, length = tokens.shape
    offsets = torch.rand((), generator=generator)
    t = ((torch.arange(batch, dtype=torch.float32) + offsets) / batch).clamp(max=1.0)
    t = t[torch.randperm(batch, generator=generator)]
    rate = (1 - MIN_MASK_RATE) * t + MIN_MASK_RATE
    share = torch.rand(batch, generator=generator) * (torch.rand(batch, generator=generator) >= mask_only_fraction)
    corrupt = torch.rand(batch, length, generator=generator) < rate[:, None]
    replaced = corrupt & (torch.rand(batch, length, generator=generator) < share[:, None])
    noise = noise_ids[torch.randint(len(noise_ids), (batch, length), generator=generator)]
    rate, corrupt, replaced, noise = (x.to(tokens.device) for x in (rate, corrupt, replaced, noise))
    noisy = torch.where(replaced, noise, torch.where(corrupt, torch.full_like(tokens, mask_id), tokens))
    logits = model(noisy).logits.float()
    token_loss = F.cross_entropy(logits.transpose(1, 2), tokens, reduction="none")
    weight = torch.where(corrupt, 1 / rate[:, None], torch.ones_like(rate[:, None]))
    weighted = (token_loss * weight).sum(dim=1)
    return weighted.sum() / (batch * length), weighted


def noise_token_ids(tokenizer) -> torch.Tensor:
    """The ids random-token corruption draws from: every token but the special ones (end-of-text, mask, pad)."""
    special = set(tokenizer.all_special_ids)
    return torch.tensor([i for i in range(len(tokenizer)) if i not in special], dtype=torch.long)


def objective_loss(model: CanvasLM, objective: str, tokens: torch.Tensor, tokenizer, generator: torch.Generator, args):
    """The loss of ``objective`` (``diffusion``, ``edit`` or ``ar``) on a batch: (mean, per-sequence sums)."""
    if objective == "ar":
        return ar_loss(model, tokens)
    if objective == "edit":
        return corruption_loss(model, tokens, tokenizer.mask_token_id, noise_token_ids(tokenizer), generator,
                               args.mask_only_fraction)
    return diffusion_loss(model, tokens, tokenizer.mask_token_id, generator)


def ar_loss(model: CanvasLM, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Next-token cross-entropy; returns (mean per predicted token, per-sequence sums)."""
    logits = model(tokens[:, :-1]).logits.float()
    token_loss = F.cross_entropy(logits.transpose(1, 2), tokens[:, 1:], reduction="none")
    return token_loss.mean(), token_loss.sum(dim=1)


# ------------------------------------------------------------------------------------------ training


def sample_batch(stream: np.ndarray, batch: int, length: int, rng: np.random.Generator) -> torch.Tensor:
    starts = rng.integers(0, stream.size - length, size=batch)
    return torch.from_numpy(np.stack([stream[s : s + length] for s in starts]).astype(np.int64))


def model_config(args, tokenizer, causal: bool) -> CanvasConfig:
    return CanvasConfig(
        vocab_size=len(tokenizer),
        hidden_size=args.width,
        num_hidden_layers=args.layers,
        num_attention_heads=args.heads,
        intermediate_size=args.mlp,
        max_position_embeddings=args.context,
        causal=causal,
        mask_token_id=tokenizer.mask_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )


def learning_rate(step: int, args) -> float:
    """Linear warm-up, then cosine decay to 10 % over ``--decay-steps`` (then flat)."""
    if step < args.warmup:
        return args.lr * (step + 1) / args.warmup
    progress = min(1.0, (step - args.warmup) / max(1, args.decay_steps - args.warmup))
    return args.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


@torch.no_grad()
def held_out_loss(model: CanvasLM, objective: str, stream: np.ndarray, args, tokenizer) -> float:
    """Mean loss per token on fixed held-out windows with a fixed seed (comparable across steps)."""
    model.eval()
    rng = np.random.default_rng(1234)
    generator = torch.Generator().manual_seed(1234)
    total = 0.0
    for _ in range(args.eval_batches):
        tokens = sample_batch(stream, max(1, args.batch_tokens // args.context), args.context + (objective == "ar"), rng)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.bf16):
            loss, _ = objective_loss(model, objective, tokens, tokenizer, generator, args)
        total += loss.item()
    model.train()
    return total / args.eval_batches


@dataclass
class TrainingRun:
    """What a resumable run saves and restores: model, optimiser, counters and both RNG streams."""

    model: CanvasLM
    optimizer: torch.optim.Optimizer
    state: dict
    rng: np.random.Generator
    generator: torch.Generator

    def resume(self, out: Path) -> bool:
        """Continue from ``out/checkpoint.pt`` if it exists (bit for bit: the RNG states come back too)."""
        if not (out / "checkpoint.pt").exists():
            return False
        checkpoint = torch.load(out / "checkpoint.pt", map_location="cpu", weights_only=False)
        self.model.load_state_dict(checkpoint["model"])
        self.optimizer.load_state_dict(checkpoint["optimizer"])
        self.state.clear()
        self.state.update(checkpoint["state"])
        self.rng.bit_generator.state = checkpoint["numpy_rng"]
        self.generator.set_state(checkpoint["torch_rng"])
        return True

    def save(self, path: Path, args) -> None:
        """Write atomically (a temporary file, then a rename), so a killed run never leaves half a file."""
        torch.save(
            {
                "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "state": self.state,
                "numpy_rng": self.rng.bit_generator.state,
                "torch_rng": self.generator.get_state(),
                "config": self.model.config.to_dict(),
                "step": self.state["step"],
                "args": vars(args),
            },
            path.with_suffix(".tmp"),
        )
        path.with_suffix(".tmp").replace(path)


def train(args) -> None:
    data_dir, out = Path(args.data), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = load_tokenizer(data_dir)
    train_stream = np.load(data_dir / "train.npy")
    val_stream = np.load(data_dir / "validation.npy")
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    causal = args.objective == "ar"
    model = CanvasLM(model_config(args, tokenizer, causal))
    if args.init_from and not (out / "checkpoint.pt").exists():
        # Dream / DiffuLLaMA-style adaptation: start the diffusion model from the AR twin's weights.
        source = torch.load(args.init_from, map_location="cpu", weights_only=False)
        model.load_state_dict(source["model"])
        print(f"initialised from {args.init_from} (step {source['step']})")
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, betas=(0.9, 0.95), weight_decay=args.weight_decay)
    state = {"step": 0, "tokens": 0, "seconds": 0.0, "best": float("inf"), "bad_evals": 0}
    rng = np.random.default_rng(args.seed)
    generator = torch.Generator().manual_seed(args.seed)
    run = TrainingRun(model, optimizer, state, rng, generator)
    if run.resume(out):
        print(f"resumed from step {state['step']} ({state['tokens'] / 1e6:.1f}M tokens)")
    params = sum(p.numel() for p in model.parameters())
    print(f"{args.objective} model: {params / 1e6:.2f}M parameters, context {args.context}")

    def save(path: Path) -> None:
        run.save(path, args)

    from tqdm import tqdm

    log = (out / "log.jsonl").open("a")
    model.train()
    session_start = time.time()
    progress = tqdm(initial=state["step"], unit="step", dynamic_ncols=True, mininterval=5)
    while True:
        elapsed_minutes = (time.time() - session_start) / 60
        if (args.minutes and elapsed_minutes >= args.minutes) or (args.tokens and state["tokens"] >= args.tokens):
            break
        if args.patience and state["bad_evals"] >= args.patience:
            print("early stop: held-out loss has not improved for", args.patience, "evaluations")
            break
        started = time.time()
        length = args.context
        if not causal and rng.random() < args.short_fraction:
            # Some short canvases, so the model also sees sequences that end early (LLaDA trains 1 %).
            length = int(rng.integers(16, args.context))
        # A fixed token budget per batch: short canvases come in larger batches, so each step costs the same.
        tokens = sample_batch(train_stream, max(1, args.batch_tokens // length), length + causal, rng)
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(state["step"], args)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.bf16):
            loss, _ = objective_loss(model, args.objective, tokens, tokenizer, generator, args)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        state["step"] += 1
        state["tokens"] += tokens.numel()
        state["seconds"] += time.time() - started
        progress.update(1)
        progress.set_postfix(loss=f"{loss.item():.3f}", tok_s=f"{state['tokens'] / max(state['seconds'], 1e-9):.0f}", refresh=False)
        if state["step"] % args.eval_every == 0:
            val = held_out_loss(model, args.objective, val_stream, args, tokenizer)
            record = {
                "step": state["step"],
                "tokens": state["tokens"],
                "seconds": round(state["seconds"], 1),
                "train_loss": round(loss.item(), 4),
                "val_loss": round(val, 4),
                "lr": learning_rate(state["step"], args),
            }
            log.write(json.dumps(record) + "\n")
            log.flush()
            progress.write(json.dumps(record))
            if val < state["best"]:
                state["best"], state["bad_evals"] = val, 0
                save(out / "best.pt")
            else:
                state["bad_evals"] += 1
            save(out / "checkpoint.pt")
    save(out / "checkpoint.pt")
    progress.close()
    print(f"stopped at step {state['step']}, {state['tokens'] / 1e6:.1f}M tokens, best held-out loss {state['best']:.4f}")


def export(args) -> None:
    """Checkpoint -> model folder with fp16 safetensors, config and tokenizer."""
    checkpoint = torch.load(args.checkpoint, map_location="cpu", weights_only=False)
    config = CanvasConfig(**{k: v for k, v in checkpoint["config"].items() if k not in ("model_type", "transformers_version")})
    model = CanvasLM(config)
    model.load_state_dict(checkpoint["model"])
    out = Path(args.out)
    model.half().save_pretrained(out, safe_serialization=True)
    load_tokenizer(Path(args.data)).save_pretrained(out)
    summary = {k: checkpoint["state"][k] for k in ("step", "tokens", "seconds", "best")}
    summary["args"] = {k: v for k, v in checkpoint["args"].items() if k != "func"}
    (out / "training.json").write_text(json.dumps(summary, indent=2, default=str))
    print(f"exported {args.checkpoint} -> {out}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m dlm_core.train", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    p = commands.add_parser("prepare", help="build tokenizer and token arrays")
    p.add_argument("--corpus", choices=sorted(CORPORA), default="shakespeare")
    p.add_argument("--data", default=None, help="output folder (default: runs/data, or runs/code-data for python)")
    p.add_argument("--vocab-size", type=int, default=4096)
    t = commands.add_parser("train", help="train (or resume) one model")
    t.add_argument("--objective", choices=["diffusion", "edit", "ar"], required=True,
                   help="edit: masked diffusion plus random-token corruption (learns to correct tokens)")
    t.add_argument("--mask-only-fraction", type=float, default=0.5,
                   help="edit objective: share of sequences corrupted by masking alone")
    t.add_argument("--data", default="runs/data")
    t.add_argument("--out", required=True)
    t.add_argument("--init-from", default=None, help="checkpoint to initialise from (e.g. the AR twin)")
    t.add_argument("--width", type=int, default=256)
    t.add_argument("--layers", type=int, default=6)
    t.add_argument("--heads", type=int, default=4)
    t.add_argument("--mlp", type=int, default=704)
    t.add_argument("--context", type=int, default=640)
    t.add_argument("--batch-tokens", type=int, default=4096, help="tokens per optimiser step")
    t.add_argument("--lr", type=float, default=1e-3)
    t.add_argument("--weight-decay", type=float, default=0.1)
    t.add_argument("--warmup", type=int, default=200)
    t.add_argument("--decay-steps", type=int, default=10000)
    t.add_argument("--short-fraction", type=float, default=0.2)
    t.add_argument("--minutes", type=float, default=0, help="stop after this many minutes (0 = no limit)")
    t.add_argument("--tokens", type=float, default=0, help="stop after this many training tokens (0 = no limit)")
    t.add_argument("--patience", type=int, default=0, help="early stop after N evaluations without improvement")
    t.add_argument("--eval-every", type=int, default=200)
    t.add_argument("--eval-batches", type=int, default=8)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--threads", type=int, default=2)
    t.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=True)
    e = commands.add_parser("export", help="checkpoint -> model folder")
    e.add_argument("--checkpoint", required=True)
    e.add_argument("--data", default="runs/data")
    e.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    if args.command == "train" and not 0.0 <= args.mask_only_fraction <= 1.0:
        parser.error(f"--mask-only-fraction must be in [0, 1], got {args.mask_only_fraction}")
    random.seed(0)
    if args.command == "prepare":
        data_dir = Path(args.data or CORPORA[args.corpus])
        data_dir.mkdir(parents=True, exist_ok=True)
        prepare(data_dir, args.vocab_size, args.corpus)
    elif args.command == "train":
        train(args)
    else:
        export(args)


if __name__ == "__main__":
    main()
