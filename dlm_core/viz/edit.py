"""Post-editing by hand: turn tokens the user picked on the canvas back into masks.

The sampler's entry point is prompt text with ``[MASK]`` placeholders, so a hand edit becomes a
prompt: the canvas text up to the answer's end, with every picked (written) token replaced by a
placeholder (runs of them by ``[MASK:n]``) and any literal ``[MASK`` escaped. Denoising that
prompt with ``gen_length=0`` rewrites exactly the picked tokens and keeps everything else.

Limitation: the kept text is re-tokenised, so a model whose tokenizer would merge the text
differently sees slightly different token boundaries than the original canvas (never different
text). An explicit "token ids + positions to re-mask" entry point in the sampler would avoid that.
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


def edit_prompt(view: RunView, selected: Iterable[int], step: int | None = None) -> tuple[str, int]:
    """(prompt, number of masked slots) that re-writes ``selected`` positions of the canvas at ``step``.

    Positions still masked at that step stay masked; positions after the end of text are dropped.
    Raises ``EditError`` if nothing editable is selected.
    """
    step = view.last_step if step is None else view.clamp(step)
    state = view.states[step]
    allowed = editable_positions(view, step)
    chosen = {int(i) for i in selected} & allowed
    if not chosen:
        raise EditError(
            "selection: pick at least one written token of the answer to re-write (click tokens in the canvas "
            "while 'Pick tokens to re-write' is on)"
        )
    end = min(int(state.answer_end), view.length)
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
        masked = bool(state.masked[position]) and not bool(state.fixed[position])
        if position in chosen or masked:
            flush_literal()
            run += 1
            slots += 1
            continue
        flush_run()
        literal.append(view.token_text(state.tokens[position]))
    flush_literal()
    flush_run()
    return "".join(parts), slots
