"""Schedules: how generation slots split into blocks, steps into blocks, and tokens into steps.

Notation: N generation slots (``[MASK]`` placeholders in the prompt plus ``gen_length`` appended
masks, in reading order), block length B, S total steps.

Blocks (LLaDA's semi-autoregressive decoding): slots are cut in reading order into K = ceil(N / B)
blocks of B slots; the last block holds the remainder (N - (K-1) B), so lengths need not divide.
Blocks are decoded one after another; a block's slots are the only candidates while it is active.

Steps per block: every block gets at least one step and at most one step per slot (a step that can
commit nothing would be a wasted forward). Block b gets ``1 + share_b`` steps where the remaining
S - K steps are split proportionally to the block's spare capacity n_b - 1 with the largest-remainder
rule (ties go to the earlier block). Hence K <= S <= N is required, 1 <= steps_b <= n_b, and equal
blocks get S / K steps each exactly as LLaDA's ``steps // num_blocks`` (the remainder, when S is not
a multiple of K, going to the first blocks).

Tokens per step inside a block (LLaDA's ``get_num_transfer_tokens``): with n_b masked slots and
steps_b steps, step j commits ``n_b // steps_b + (j < n_b % steps_b)``: the base count, plus one for
the first ``n_b % steps_b`` steps. LLaDA's linear schedule alpha_t = 1 - t makes the expected number
of unmasked tokens per step constant; this is its integer version.

Dream's schedule: timesteps ``linspace(1, eps, steps_b + 1)`` (float32 as Dream computes them); at
step j from t = ts[j] to s = ts[j + 1] a masked slot unmasks with probability 1 - s / t, so the
count-based strategies commit ``floor(masked * (1 - s / t))`` and the last step of a block commits
everything left.
"""

from __future__ import annotations

import torch


def split_blocks(num_slots: int, block_length: int | None) -> list[int]:
    """Block sizes over ``num_slots`` slots: full blocks of ``block_length`` then the remainder."""
    if num_slots <= 0:
        return []
    size = num_slots if block_length is None else min(block_length, num_slots)
    full, rest = divmod(num_slots, size)
    return [size] * full + ([rest] if rest else [])


def allocate_steps(block_sizes: list[int], steps: int) -> list[int]:
    """Steps per block: 1 each, then the other ``steps - K`` proportionally to ``n_b - 1`` (largest remainder)."""
    num_blocks, total = len(block_sizes), sum(block_sizes)
    if not num_blocks <= steps <= total:
        raise ValueError(f"steps must be in [{num_blocks}, {total}] for blocks {block_sizes}, got {steps}")
    spare = steps - num_blocks
    capacity = [size - 1 for size in block_sizes]
    total_capacity = sum(capacity)
    if spare == 0 or total_capacity == 0:
        return [1] * num_blocks
    # Exact integer arithmetic: share_b = spare * capacity_b / total_capacity.
    floors = [spare * c // total_capacity for c in capacity]
    remainders = [spare * c % total_capacity for c in capacity]
    leftover = spare - sum(floors)
    # Largest remainder first; Python's sort is stable, so ties keep block order (earlier first).
    for index in sorted(range(num_blocks), key=lambda b: -remainders[b])[:leftover]:
        floors[index] += 1
    return [1 + share for share in floors]


def num_transfer_tokens(block_size: int, block_steps: int) -> list[int]:
    """LLaDA's per-step counts for one block: base + 1 for the first ``block_size % block_steps`` steps."""
    base, rest = divmod(block_size, block_steps)
    return [base + (1 if j < rest else 0) for j in range(block_steps)]


def llada_count(block_size: torch.Tensor, block_steps: torch.Tensor, step_in_block: torch.Tensor) -> torch.Tensor:
    """Vectorised ``num_transfer_tokens(block_size, block_steps)[step_in_block]`` per batch row."""
    return block_size // block_steps + (step_in_block < block_size % block_steps).long()


def dream_timesteps(steps: int, eps: float) -> torch.Tensor:
    """Dream's ``torch.linspace(1, eps, steps + 1)`` (float32, as in its ``_sample``)."""
    return torch.linspace(1, eps, steps + 1, dtype=torch.float32)
