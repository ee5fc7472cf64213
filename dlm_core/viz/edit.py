"""Post-editing by hand: turn tokens the user picked on the canvas back into masks.

``edit_canvas`` gives the sampler the edit as token ids: the canvas up to the answer's end, with
every picked (written) token and every still-masked slot as a generation slot. The app denoises it
(``sampler.canvas_prompt``, ``gen_length=0``), so exactly the picked tokens are rewritten and the
kept ones are reused as they are: never re-tokenised, never wrapped in a chat template again.
``edit_prompt`` writes the same edit as prompt text with ``[MASK]`` placeholders (runs of them as
``[MASK:n]``, any literal ``[MASK`` escaped): what the user sees, and what a re-run of it from the
prompt box would denoise.
"""

from __future__ import annotations

from collections.abc import Iterable

from .view import RunView


class EditError(ValueError):
    """Nothing usable was selected. ``field`` is always ``selection``."""

    field = "selection"


def editable_positions(view: RunView, step: int | None = None) -> set[int]:
    """Positions that may be picked: written (or still masked) generation slots before the answer's end."""
    state = view.states[view.last_step if step is None else view.clamp(step)]
    end = int(state.answer_end)
    return {i for i in range(min(end, view.length)) if not state.fixed[i]}


def escape_literal(text: str) -> str:
    """Literal text for a prompt: a ``[MASK`` in it must not become a placeholder."""
    return text.replace("[MASK", "\\[MASK")


def _edit_slots(view: RunView, selected: Iterable[int], step: int | None):
    """(state at ``step``, answer end, positions to denoise: picked written tokens + still-masked slots)."""
    step = view.last_step if step is None else view.clamp(step)
    state = view.states[step]
    chosen = {int(i) for i in selected} & editable_positions(view, step)
    if not chosen:
        raise EditError(
            "selection: pick at least one written token of the answer to re-write (click tokens in the canvas "
            "while 'Pick tokens to re-write' is on)"
        )
    end = min(int(state.answer_end), view.length)
    still_masked = {i for i in range(end) if bool(state.masked[i]) and not bool(state.fixed[i])}
    return state, end, chosen | still_masked


def edit_canvas(view: RunView, selected: Iterable[int], step: int | None = None) -> tuple[list[int], list[int]]:
    """(token ids of the canvas at ``step`` up to the answer's end, positions to re-write): the picked
    written tokens and the slots still masked there. Raises ``EditError`` if nothing editable is picked."""
    state, end, slot_set = _edit_slots(view, selected, step)
    return [int(token) for token in state.tokens[:end]], sorted(slot_set)


def edit_prompt(view: RunView, selected: Iterable[int], step: int | None = None) -> tuple[str, int]:
    """(prompt, number of masked slots) that re-writes ``selected`` positions of the canvas at ``step``.

    Positions still masked at that step stay masked; positions after the end of text are dropped.
    Raises ``EditError`` if nothing editable is selected.
    """
    state, end, slot_set = _edit_slots(view, selected, step)
    parts: list[str] = []
    literal: list[str] = []
    run = slots = 0

    def flush_literal() -> None:
        if literal:
            parts.append(escape_literal("".join(literal)))
            literal.clear()

    def flush_run() -> None:
        nonlocal run
        if run:
            if parts and parts[-1].endswith("\\"):
                raise EditError(
                    "selection: the text right before a picked token ends with a backslash, which the [MASK] "
                    "syntax cannot express; pick the backslash too"
                )
            parts.append("[MASK]" if run == 1 else f"[MASK:{run}]")
            run = 0

    for position in range(end):
        if position in slot_set:
            flush_literal()
            run += 1
            slots += 1
            continue
        flush_run()
        literal.append(view.token_text(state.tokens[position]))
    flush_literal()
    flush_run()
    return "".join(parts), slots
