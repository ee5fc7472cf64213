"""Prompt text -> the initial canvas: fixed token ids plus the generation slots to denoise.

Placeholder syntax (infilling and constraints)
    ``[MASK]``     one masked slot at that point of the text
    ``[MASK:n]``   n masked slots, n an integer in [1, 2048] (ASCII digits)
    ``\\[MASK``    a literal "[MASK" (the backslash is dropped), e.g. ``\\[MASK]`` writes "[MASK]"

Any other unescaped "[MASK" (``[MASK:0]``, ``[MASK:abc]``, ``[MASK:99999]``, ``[MASKED]``, an
unclosed ``[MASK:3``) is a ``PromptError`` naming the field ``prompt``, the character offset and the
allowed form: a typo never silently becomes literal text. Matching is case-sensitive ("[mask]" is
text). Everything else is literal and is never overwritten by the sampler.

The generation slots are the placeholders (in reading order) followed by ``gen_length`` masks
appended after the prompt; ``gen_length`` may be 0 when the prompt has placeholders. Literal text
between placeholders is encoded piece by piece (a tokenizer never merges across a slot boundary).
The model's chat-template hook ``prepare_prompt`` is applied to the whole text before parsing.

A canvas can also be given as token ids (``canvas_prompt``): a hand edit re-masks positions of a
canvas the model already wrote, so its kept tokens are reused as they are, never re-tokenised
(which could shift token boundaries) nor wrapped in a chat template a second time.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

MAX_PLACEHOLDER = 2048
_MARKER = re.compile(r"\\\[MASK|\[MASK")


class PromptError(ValueError):
    """The prompt (or a length that depends on it) is unusable. ``field`` names the culprit."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field
        self.message = message


@dataclass(frozen=True)
class Segment:
    """Literal ``text`` (masks == 0) or a run of ``masks`` placeholder slots (text == "")."""

    text: str = ""
    masks: int = 0


@dataclass(frozen=True)
class EncodedPrompt:
    """The initial canvas of one run.

    text: the prompt as the user wrote it. ids: every position (prompt tokens, placeholder masks,
    appended masks) with ``mask_id`` at slots. slots: generation positions in reading order.
    prompt_length: positions before the appended region (``len(ids) - gen_length``).
    """

    text: str
    ids: tuple[int, ...]
    slots: tuple[int, ...]
    prompt_length: int

    @property
    def fixed(self) -> tuple[bool, ...]:
        slot_set = set(self.slots)
        return tuple(i not in slot_set for i in range(len(self.ids)))


def _placeholder_error(offset: int, detail: str) -> PromptError:
    return PromptError(
        "prompt",
        f"prompt has a malformed placeholder at character {offset}: {detail}; write [MASK] or [MASK:n] with n an "
        f"integer in [1, {MAX_PLACEHOLDER}], or \\[MASK for a literal '[MASK'",
    )


def parse_prompt(text: str) -> list[Segment]:
    """Split prompt text into literal and placeholder segments (adjacent literals merged)."""
    if not isinstance(text, str):
        raise PromptError("prompt", f"prompt must be a string, got {type(text).__name__}")
    segments: list[Segment] = []
    literal: list[str] = []

    def flush() -> None:
        if literal:
            segments.append(Segment(text="".join(literal)))
            literal.clear()

    position = 0
    for match in _MARKER.finditer(text):
        start = match.start()
        if start < position:  # inside a placeholder already consumed
            continue
        literal.append(text[position:start])
        if match.group().startswith("\\"):
            literal.append("[MASK")  # escaped: drop the backslash, keep the text
            position = match.end()
            continue
        after = match.end()
        if text.startswith("]", after):
            count, position = 1, after + 1
        elif text.startswith(":", after):
            close = text.find("]", after)
            if close == -1:
                raise _placeholder_error(start, "'[MASK:' is never closed with ']'")
            digits = text[after + 1 : close]
            if not (digits.isascii() and digits.isdigit()):
                raise _placeholder_error(start, f"the count {digits[:20]!r} is not an integer")
            count = int(digits) if len(digits) <= 6 else MAX_PLACEHOLDER + 1
            if not 1 <= count <= MAX_PLACEHOLDER:
                raise _placeholder_error(start, f"the count {digits[:20]} is out of range")
            position = close + 1
        else:
            raise _placeholder_error(start, f"{text[start : start + 8]!r} is neither [MASK] nor [MASK:n]")
        flush()
        segments.append(Segment(masks=count))
    literal.append(text[position:])
    flush()
    return [segment for segment in segments if segment.masks or segment.text]


def canvas_prompt(model, ids: Sequence[int], slots: Iterable[int], text: str = "") -> EncodedPrompt:
    """A canvas given as token ids: ``slots`` (positions of ``ids``) are the generation slots and
    become ``model.mask_id``; every other id is kept. ``text`` is how the canvas reads (for records).

    Raises ``PromptError`` (field ``ids`` or ``slots``) for: ids that are not integers in
    [0, vocab_size), a kept position holding the mask token, more than ``model.max_length``
    positions, slots outside [0, len(ids)), repeated, or none at all.
    """
    vocab, max_length = int(model.vocab_size), int(model.max_length)
    try:
        ids = [int(i) for i in ids]
        slot_list = sorted(int(i) for i in slots)
    except (TypeError, ValueError) as error:
        raise PromptError("ids", f"ids and slots must be sequences of integers ({error})") from None
    if not 1 <= len(ids) <= max_length:
        raise PromptError("ids", f"ids must hold 1 to {max_length} token ids (model max_length), got {len(ids)}")
    bad = [i for i in ids if not 0 <= i < vocab]
    if bad:
        raise PromptError("ids", f"token ids must be integers in [0, {vocab - 1}], got {bad[0]}")
    if not slot_list or len(set(slot_list)) != len(slot_list) or not 0 <= slot_list[0] <= slot_list[-1] < len(ids):
        raise PromptError("slots", f"slots must be 1 to {len(ids)} distinct positions in [0, {len(ids) - 1}], got {slot_list}")
    slot_set = set(slot_list)
    kept_masks = [i for i, token in enumerate(ids) if token == model.mask_id and i not in slot_set]
    if kept_masks:
        raise PromptError("ids", f"position {kept_masks[0]} holds the mask token but is not among the slots")
    ids = [model.mask_id if i in slot_set else token for i, token in enumerate(ids)]
    return EncodedPrompt(text=text, ids=tuple(ids), slots=tuple(slot_list), prompt_length=len(ids))


def prompt_text(prompt: str | EncodedPrompt) -> str:
    """How a prompt reads: the text itself, or an encoded canvas's ``text``."""
    return prompt.text if isinstance(prompt, EncodedPrompt) else prompt


def encode_prompt(model, text: str | EncodedPrompt, gen_length: int) -> EncodedPrompt:
    """Parse and encode ``text`` for ``model``, append ``gen_length`` slots, check lengths.

    An ``EncodedPrompt`` (from ``canvas_prompt``) is used as it is, with ``gen_length`` slots appended.

    Raises ``PromptError`` for: a non-string, empty or whitespace-only prompt; malformed
    placeholders; literal text that encodes to the mask token (write [MASK] instead); a tokenizer
    failure; prompt + gen_length > model.max_length (field ``prompt`` when the prompt alone is too
    long, else ``gen_length``); nothing to generate (field ``gen_length``).
    """
    if isinstance(text, EncodedPrompt):
        return _append_slots(model, text, gen_length)
    if not isinstance(text, str):
        raise PromptError("prompt", f"prompt must be a string, got {type(text).__name__}")
    if not text.strip():
        raise PromptError("prompt", "prompt must contain at least one non-whitespace character")
    segments = parse_prompt(model.prepare_prompt(text))
    ids: list[int] = []
    slots: list[int] = []
    for segment in segments:
        if segment.masks:
            slots.extend(range(len(ids), len(ids) + segment.masks))
            ids.extend([model.mask_id] * segment.masks)
            continue
        try:
            piece = [int(token) for token in model.encode(segment.text)]
        except Exception as error:  # a tokenizer's own failure is the user's input problem here
            raise PromptError("prompt", f"the tokenizer could not encode the prompt: {error}") from error
        if model.mask_id in piece:
            raise PromptError(
                "prompt",
                f"prompt text contains the model's mask token {model.token_text(model.mask_id)!r}; "
                "write [MASK] for a masked slot",
            )
        ids.extend(piece)
    prompt_length = len(ids)
    max_length = int(model.max_length)
    if prompt_length > max_length:
        raise PromptError(
            "prompt", f"prompt is {prompt_length} tokens; prompt + gen_length must be <= max_length {max_length}"
        )
    if not slots and gen_length == 0:
        raise PromptError(
            "gen_length",
            f"gen_length must be an integer in [1, {max_length - prompt_length}] when the prompt has no [MASK] "
            "placeholders (nothing to generate), got 0",
        )
    encoded = EncodedPrompt(text=text, ids=tuple(ids), slots=tuple(slots), prompt_length=prompt_length)
    return _append_slots(model, encoded, gen_length)


def _append_slots(model, encoded: EncodedPrompt, gen_length: int) -> EncodedPrompt:
    """``encoded`` with ``gen_length`` masked slots appended (checked against ``model.max_length``):
    the last step of ``encode_prompt`` for text and for a ``canvas_prompt`` alike."""
    length, max_length = len(encoded.ids), int(model.max_length)
    if length + gen_length > max_length:
        raise PromptError(
            "gen_length",
            f"gen_length must be an integer in [0, {max_length - length}] for this prompt "
            f"({length} tokens, model max_length {max_length}), got {gen_length}",
        )
    return EncodedPrompt(
        text=encoded.text,
        ids=encoded.ids + (model.mask_id,) * gen_length,
        slots=encoded.slots + tuple(range(length, length + gen_length)),
        prompt_length=length,
    )
