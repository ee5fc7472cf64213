"""The token canvas as HTML: one ``<span>`` per position, styled by ``assets/style.css``.

Every piece of text that comes from the model or the user goes through ``html.escape`` (content and
attributes alike); nothing else is ever interpolated into the markup. Whitespace is kept: the canvas
is ``white-space: pre-wrap``, a newline token shows a faint return sign followed by a real line
break, a tab an arrow plus the tab, other control characters their Unicode control picture.

Span classes (short, because the canvas streams every step):

    t    every position          p    prompt token (fixed, never changed)
    m    masked (not written)    n    written in this step (or since the previous frame)
    r    re-masked in this step  v    revised: re-masked earlier, now a different token
    q0..q4 confidence bin of a written token (0-20 % ... 80-100 %, ``PALETTE``)
    e    the end-of-text token   x    after the end of text (not part of the answer)
    s    selected for re-writing by hand     i    the position shown in the inspector
    w    a written token that is only whitespace (a newline): no colour box, a faint sign

Each span carries ``data-i`` (its position) and a ``title`` tooltip. ``detail=True`` adds the
model's top candidates at that step to the tooltip of every position the step scored ("what is
the model thinking?"); the live stream of a fast model leaves the tooltips out altogether
(``titles=False``) to keep per-step updates small; paused, scrubbed and finished canvases have them.
"""

from __future__ import annotations

import html
import math
from collections.abc import Iterable

import numpy as np

from ..state import MASK_GLYPH
from .view import Frame, RunView

# Confidence bins (ColorBrewer YlGnBu: sequential, colour-blind safe, readable in light and dark
# themes): background, text colour. The heatmap uses the same stops.
PALETTE = (
    ("#ffffcc", "#1f2937"),
    ("#c7e9b4", "#1f2937"),
    ("#7fcdbb", "#1f2937"),
    ("#2c7fb8", "#ffffff"),
    ("#253494", "#ffffff"),
)
BIN_LABELS = ("0–20%", "20–40%", "40–60%", "60–80%", "80–100%")
NEWLINE_SIGN = "\u21b5"  # ↵
TAB_SIGN = "\u2192"  # →
EMPTY_SIGN = "\u2205"  # ∅ (a token that decodes to no text)
EOS_LABEL = "\u25a0 end"  # ■ end (a glyph every font has)


def confidence_bin(p: float) -> int:
    """0..4 for a probability; -1 for NaN (unknown)."""
    if p is None or math.isnan(p):
        return -1
    return min(len(PALETTE) - 1, max(0, int(p * len(PALETTE))))


def visible(text: str) -> str:
    """Token text as shown in a tooltip or list: whitespace made visible, quoted."""
    shown = text.replace("\n", NEWLINE_SIGN).replace("\t", TAB_SIGN).replace(" ", "\u2423")
    shown = "".join(_control_picture(ch) for ch in shown)
    return f"\u201c{shown}\u201d" if shown else EMPTY_SIGN


def _control_picture(ch: str) -> str:
    code = ord(ch)
    if code < 0x20:
        return chr(0x2400 + code)
    if code == 0x7F:
        return "\u2421"
    return ch


def token_body(text: str) -> str:
    """Escaped span content for a token: newlines and tabs visible *and* kept."""
    if text == "":
        return EMPTY_SIGN
    out = []
    for ch in text:
        if ch == "\n":
            out.append(f'<i class="nl">{NEWLINE_SIGN}</i>\n')
        elif ch == "\t":
            out.append(f"{TAB_SIGN}\t")
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(_control_picture(ch))
        else:
            out.append(html.escape(ch, quote=False))
    return "".join(out)


def percent(p: float) -> str:
    return "?" if p is None or math.isnan(p) else f"{100 * p:.0f}%"


def _topk_text(view: RunView, frame: Frame, position: int) -> str:
    if frame.topk_ids is None:
        return ""
    ids, probs = frame.topk_ids[position], frame.topk_probs[position]
    items = [
        f"{visible(view.token_text(i))} {percent(p)}"
        for i, p in zip(ids.tolist(), probs.tolist(), strict=True)
        if i >= 0
    ]
    return " · top guesses: " + ", ".join(items) if items else ""


def span_html(
    view: RunView,
    frame: Frame,
    position: int,
    *,
    detail: bool = False,
    selected: bool = False,
    inspected: bool = False,
    titles: bool = True,
) -> str:
    """One position's ``<span>`` at ``frame`` (``titles=False``: no tooltip, for fast live frames)."""
    classes = ["t"]
    fixed = bool(frame.fixed[position])
    masked = bool(frame.masked[position])
    token = int(frame.tokens[position])
    after_end = position > frame.answer_end
    is_eos = not masked and not fixed and position == frame.answer_end and frame.answer_end < len(frame.tokens)
    where = f"#{position}"
    if fixed:
        classes.append("p")
        title = f"{where} · prompt {visible(view.token_text(token))} (given, never changed)"
        body = token_body(view.token_text(token))
    elif masked and frame.uniform:
        # Uniform-state diffusion: no mask token. A position shows its current draft, faded until accepted.
        classes.append("d")
        if token == frame.mask_id and not frame.remasked[position]:
            title = f"{where} · not drawn yet: this canvas has not started"
            body = "\u00b7"
        else:
            prob = float(frame.prob[position]) if frame.prob is not None else float("nan")
            sure = f" · {percent(prob)} sure" if prob == prob else ""
            renoised = " · renoised this step (it was accepted before)" if frame.remasked[position] else ""
            title = f"{where} · draft {visible(view.token_text(token))}{sure}: not accepted yet{renoised}"
            body = token_body(view.token_text(token))
            if frame.remasked[position]:
                classes.append("r")
        if detail:
            title += _topk_text(view, frame, position)
    elif masked:
        classes.append("m")
        if frame.remasked[position]:
            classes.append("r")
            lost = frame.previous.get(position)
            lost_text = f" (it was {visible(view.token_text(lost))})" if lost is not None else ""
            title = f"{where} · re-masked in this step{lost_text}: the model will write it again"
        else:
            title = f"{where} · masked: not written yet"
        if detail:
            title += _topk_text(view, frame, position)
        body = MASK_GLYPH
    else:
        p = float(frame.commit_prob[position])
        level = confidence_bin(p)
        if level >= 0:
            classes.append(f"q{level}")
        if frame.new[position]:
            classes.append("n")
        revised = bool(frame.revised[position])
        if revised:
            classes.append("v")
        step = int(frame.commit_step[position])
        text = view.token_text(token)
        title = f"{where} · {visible(text)} · written at step {step} · {percent(p)} sure"
        if revised:
            was = visible(view.token_text(int(frame.first_lost[position])))
            title += f" · revised: it was {was} before it was re-masked"
        elif frame.remask_count[position]:
            title += f" · re-masked {frame.remask_count[position]}× before and written back the same"
        if position in frame.edited:
            classes.append("ed")
            title += f" · edited: {visible(view.token_text(frame.edited[position]))} → {visible(text)}"
        if detail:
            title += _topk_text(view, frame, position)
        if text and not text.strip():
            classes.append("w")  # only whitespace (a newline): drawn quietly, without its colour box
        if is_eos:
            classes.append("e")
            title = f"{where} · end of text (written at step {step}, {percent(p)} sure): the answer stops here"
            body = EOS_LABEL
        else:
            body = token_body(text)
    if after_end and not is_eos:
        classes.append("x")
        title += " · after the end of text: not part of the answer"
    if selected:
        classes.append("s")
    if inspected:
        classes.append("i")
    tooltip = f' title="{html.escape(title)}"' if titles else ""
    return f'<span class="{" ".join(classes)}" data-i="{position}"{tooltip}>{body}</span>'


def status_line(view: RunView, frame: Frame) -> str:
    """Plain-text summary of a frame ("Step 7 of 32 · 14 of 64 tokens written · ...")."""
    written = int((~frame.fixed & ~frame.masked).sum())
    total = view.num_slots
    budget = view.meta.expected_steps
    parts = [f"Step {frame.step} of {'≤ ' if _adaptive(view) else ''}{budget}"]
    if view.meta.steps_per_block:  # its own sampler: steps are planned per block (canvas), which may stop early
        unit = _block_unit(view)
        parts = [f"Step {frame.step} · {unit} {frame.block + 1}, at most {view.meta.steps_per_block} steps each"]
    parts.append(f"{written} of {total} tokens written")
    if frame.step == 0:
        parts.append("every slot starts as noise" if frame.uniform else "every slot starts as a mask")
    else:
        new = int(frame.new.sum())
        span = "this step" if frame.since == frame.step - 1 else f"in steps {frame.since + 1}–{frame.step}"
        parts.append(f"{new} new {span}")
        remasked = int(frame.remasked.sum())
        if remasked:
            parts.append(f"{remasked} {'renoised' if frame.uniform else 're-masked'}")
        if frame.edited:
            parts.append(f"{len(frame.edited)} edited")
    if view.meta.steps_per_block and frame.step == view.last_step and view.complete:
        stop = view.stats(frame.step)["early_stop"]
        if stop is not None and stop.saved:
            parts.append(stop.text(_block_unit(view)))
    return " · ".join(parts)


def _block_unit(view: RunView) -> str:
    """What a model with its own sampler calls a block: a canvas (uniform-state) or a block."""
    return "canvas" if getattr(view.meta, "noise", "mask") == "uniform" else "block"


def _adaptive(view: RunView) -> bool:
    return view.meta.config.get("strategy") in ("threshold", "factor", "origin")


STATUS_BADGES = {
    "running": ("live", "generating…"),
    "paused": ("paused", "paused: press Step for the next step"),
    "stopped": ("stopped", "stopped"),
    "done": ("done", "finished"),
    "replay": ("replay", "replay"),
}


def canvas_html(
    view: RunView,
    step: int | None = None,
    *,
    since: int | None = None,
    detail: bool = False,
    selected: Iterable[int] = (),
    inspected: int | None = None,
    status: str | None = None,
    note: str = "",
    frame: Frame | None = None,
    titles: bool = True,
) -> str:
    """The whole canvas at ``step`` (newest by default) with a status line above the text.

    ``since``: highlight everything written after that step (a coalesced live frame); ``status``:
    one of ``STATUS_BADGES`` (default: the view's); ``note``: an extra escaped sentence; ``frame``:
    an already computed ``view.frame(...)`` (then ``step`` and ``since`` are ignored); ``titles``:
    False leaves the tooltips out (fast live frames: ~40 % fewer bytes; clicking still inspects).
    """
    if not view.states:
        return empty_canvas_html()
    frame = view.frame(step, since) if frame is None else frame
    chosen = {int(i) for i in selected}
    spans = [
        span_html(view, frame, i, detail=detail, selected=i in chosen, inspected=i == inspected, titles=titles)
        for i in range(view.length)
    ]
    status = status or view.status
    badge, badge_text = STATUS_BADGES.get(status, ("", status))
    if status != "running" and frame.step < view.last_step:
        badge, badge_text = "scrub", f"showing step {frame.step} of {view.last_step}"
    extra = f'<div class="dc-note">{html.escape(note)}</div>' if note else ""
    return (
        f'<div class="dc-canvas" data-step="{frame.step}" data-last="{view.last_step}" data-status="{status}">'
        f'<div class="dc-status"><span class="dc-badge {badge}">{html.escape(badge_text)}</span> '
        f"{html.escape(status_line(view, frame))}</div>{extra}"
        f'<div class="dc-text">{"".join(spans)}</div></div>'
    )


def empty_canvas_html(message: str = "") -> str:
    message = message or (
        "Type a prompt (or pick an example) and press Generate. The model starts from a row of masks "
        "and fills them in over several steps; each step appears here as it happens."
    )
    return f'<div class="dc-canvas dc-empty"><div class="dc-status">{html.escape(message)}</div></div>'


def legend_html() -> str:
    """The always-visible key to the canvas and heatmap colours."""
    swatches = "".join(f'<span class="t q{i}">{label}</span>' for i, label in enumerate(BIN_LABELS))
    return (
        '<div class="dc-legend" aria-label="legend">'
        f'<span class="dc-key">How sure the model was when it wrote a token:</span> {swatches}'
        '<span class="dc-sep"></span>'
        f'<span class="t m">{MASK_GLYPH}</span> masked (not written yet) '
        '<span class="t q3 n">new</span> written this step '
        f'<span class="t m r">{MASK_GLYPH}</span> re-masked (to be rewritten) '
        '<span class="t q2 v">revised</span> taken back and rewritten as a different token '
        '<span class="t q2 ed">edited</span> replaced by another token (token editing) '
        '<span class="t d">draft</span> draft, not accepted yet (uniform-state models) '
        '<span class="t p">prompt</span> your prompt '
        f'<span class="t q4 e">{EOS_LABEL}</span> end of text '
        '<span class="t q1 x">after</span> after the end (not part of the answer)'
        "</div>"
    )


# What each strategy's score (``StepState.confidence``) is, in words, and how the step uses it. A
# percentage where it is a probability; ``None``: the number itself means nothing to a student.
SCORE_WORDS: dict[str, tuple[str, bool]] = {
    "low_confidence": ("the model's probability of its guess; each step writes the slots with the highest", True),
    "threshold": ("the model's probability of its guess; the step writes every slot above the threshold "
                  "(at least one)", True),
    "factor": ("the model's probability of its guess; the step writes the surest slots while the factor rule "
               "allows", True),
    "maskgit_plus": ("the probability of its guess after the sampling temperature; the highest are written "
                     "first", True),
    "topk_margin": ("how far its top guess is ahead of the second (a probability gap); the largest gaps are "
                    "written first", True),
    "entropy": ("minus the entropy of its guesses (closer to 0 = surer); the surest are written first", False),
    "entropy_bound": ("minus the entropy of its guesses (closer to 0 = surer); the step writes the surest while "
                      "their summed doubt stays under γ", False),
    "random": ("a random number: this strategy writes the masks in a random order", False),
    "origin": ("the probability of its guess, shown only: this strategy picks the slots at random on a "
               "schedule", True),
}


def _score_html(view: RunView, frame: Frame, position: int) -> str:
    """The strategy's score of a masked slot's guess, in words (empty where it scored nothing)."""
    if frame.confidence is None or position >= len(frame.confidence) or np.isnan(frame.confidence[position]):
        return ""
    strategy = str(view.meta.config.get("strategy", ""))
    value = float(frame.confidence[position])
    words, is_probability = SCORE_WORDS.get(strategy, ("the strategy's own ranking score (higher first)", False))
    number = percent(value) if is_probability else f"{value:.3f}"
    order = view.meta.config.get("order_temperature") or 0
    noise = (
        " With order randomness above 0, a less sure slot is sometimes written before a surer one."
        if order and strategy in ("low_confidence", "maskgit_plus", "topk_margin", "entropy", "entropy_bound")
        else ""
    )
    return (
        f'<div class="dc-when">Strategy score: <b>{html.escape(number)}</b>, {html.escape(words)}.'
        f"{html.escape(noise)}</div>"
    )


def _candidates(frame_or_state, position: int):
    ids = getattr(frame_or_state, "topk_ids", None)
    if ids is None or ids[position, 0] < 0:
        return None
    return ids[position], frame_or_state.topk_probs[position]


def inspector_html(view: RunView, step: int | None, position: int | None) -> str:
    """ "What is the model thinking?": one position at one step, its top guesses as bars.

    One number per concept: a written token is described with the probability it had when it was
    written, and its bars are those of that step (so the chosen bar shows the same number); a later
    reading, where the step shown re-read it, is a second, labelled sentence. A masked slot shows the
    model's guess for it at this step and the strategy's score of that guess, in words."""
    if not view.states or position is None or not 0 <= int(position) < view.length:
        return (
            '<div class="dc-inspect dc-empty">Click any token or mask in the canvas to see what the model '
            "was considering for that position at the step shown (its top guesses and their probabilities).</div>"
        )
    position = int(position)
    frame = view.frame(step)
    token = int(frame.tokens[position])
    fixed, masked = bool(frame.fixed[position]), bool(frame.masked[position])
    head = f"Position {position} at step {frame.step}: "
    extra = ""
    source = None  # (step, ids, probs) of the bars
    chosen_id, chosen_p = None, math.nan
    if fixed:
        head += f"prompt token {visible(view.token_text(token))}, given by you (the model never changes it)."
    elif masked and frame.uniform and token != frame.mask_id:
        entropy = -float(frame.confidence[position]) if frame.confidence is not None else float("nan")
        spread = f", entropy {entropy:.2f} nats" if entropy == entropy else ""
        head += f"draft {visible(view.token_text(token))}, not accepted yet (uniform-state: no mask){spread}."
        candidates = _candidates(frame, position)
        if candidates is not None:
            source = (frame.step, *candidates)
    elif masked and frame.uniform:
        head += "not drawn yet."
    elif masked:
        guess = int(frame.proposal[position]) if getattr(frame, "proposal", None) is not None else -1
        p_guess = float(frame.prob[position]) if frame.prob is not None else math.nan
        if guess >= 0:
            head += (
                f"still masked. The model's guess for it now: {visible(view.token_text(guess))}, "
                f"{percent(p_guess)} sure."
            )
        else:
            head += "still masked (the model did not look at it in this step)."
        candidates = _candidates(frame, position)
        if candidates is not None:
            source = (frame.step, *candidates)
        chosen_id, chosen_p = (guess, p_guess) if guess >= 0 else (None, math.nan)
    else:
        written = int(frame.commit_step[position])
        p_then = float(frame.commit_prob[position])
        head += (
            f"{visible(view.token_text(token))}, written at step {written}, when the model was "
            f"{percent(p_then)} sure of it."
        )
        if position in frame.edited:
            head += (
                f" Edited this step: {visible(view.token_text(frame.edited[position]))} → "
                f"{visible(view.token_text(token))} (token editing replaces a written token directly; "
                "re-masking would have turned it back into a mask)."
            )
        chosen_id, chosen_p = token, p_then
        if written > 0 and _candidates(view.states[written], position) is not None:
            source = (written, *_candidates(view.states[written], position))
        elif _candidates(frame, position) is not None:
            source = (frame.step, *_candidates(frame, position))
        p_now = float(frame.prob[position]) if frame.prob is not None else math.nan
        if frame.step != written and not math.isnan(p_now) and percent(p_now) != percent(p_then):
            extra = (
                f'<div class="dc-when">Re-read at step {frame.step}, the model is now {percent(p_now)} sure of it '
                "(the colour in the canvas is from when it was written).</div>"
            )
    rows = []
    if source is not None:
        source_step, ids, probs = source
        when = "at this step" if source_step == frame.step else f"at step {source_step}, when it was written"
        listed = False
        for token_id, p in zip(ids.tolist(), probs.tolist(), strict=True):
            if token_id < 0:
                continue
            mine = token_id == chosen_id
            listed |= mine
            if mine and not math.isnan(chosen_p):
                p = chosen_p  # the same reading as the sentence above, to the digit
            rows.append(_bar(view, token_id, p, " chosen" if mine else ""))
        if chosen_id is not None and not listed and not math.isnan(chosen_p):
            rows.append(_bar(view, chosen_id, chosen_p, " chosen", note=" (sampled, not in the top 5)"))
        label = "Top guesses" if not masked else "Top guesses (the orange one is its guess)"
        body = f'<div class="dc-when">{label} {html.escape(when)}:</div><ol>{"".join(rows)}</ol>'
    elif fixed:
        body = ""
    elif view.states[frame.step].topk_ids is None:
        body = '<div class="dc-when">This run did not record the top candidates.</div>'
    else:
        body = (
            '<div class="dc-when">The model did not look at this position in this step (it works on one '
            "block at a time); pick a step where its block was active.</div>"
        )
    score = _score_html(view, frame, position) if masked else ""
    return f'<div class="dc-inspect"><div class="dc-head">{html.escape(head)}</div>{body}{score}{extra}</div>'


def _bar(view: RunView, token_id: int, p: float, chosen: str, note: str = "") -> str:
    width = 0 if math.isnan(p) else max(1, round(100 * p))
    return (
        f'<li class="dc-cand{chosen}"><code>{html.escape(visible(view.token_text(token_id)))}{html.escape(note)}</code>'
        f'<span class="dc-bar" style="width:{width}%"></span><span class="dc-p">{percent(p)}</span></li>'
    )


def _steps_text(view: RunView, s: dict) -> str:
    if s["steps"] < view.last_step:
        return f"{s['steps']} (showing this step of {view.last_step})"
    return f"{s['steps']}" + ("" if s["complete"] else " (not finished)")


def stats_html(view: RunView, step: int | None = None) -> str:
    """Steps, NFE, tokens per forward pass, model time (pauses apart) and tokens/s as a small table."""
    if not view.states:
        return '<div class="dc-stats dc-empty">Statistics appear here once a run starts.</div>'
    s = view.stats(step)
    config = view.meta.config
    rows = [
        ("Model", f"{view.meta.model} ({view.meta.model_kind})"),
        ("Strategy", str(config.get("strategy", ""))),
        ("Steps", _steps_text(view, s)),
        ("Forward passes (NFE)", str(s["nfe"])),
        ("Tokens written", f"{s['generated']} of {s['slots']}"),
        ("Tokens per forward pass", "–" if math.isnan(s["tokens_per_forward"]) else f"{s['tokens_per_forward']:.2f}"),
        ("Model time", f"{s['model_seconds']:.2f} s"),
        ("Tokens per second (model time)", "–" if math.isnan(s["tokens_per_second"]) else f"{s['tokens_per_second']:.0f}"),
    ]
    if s["paused_seconds"] >= 0.05:  # Step mode: the time the run waited for the next click, apart
        rows.insert(7, ("Paused (waiting for Step)", f"{s['paused_seconds']:.2f} s"))
    if s["remasked"]:
        rows.append(("Re-masked (revisions)", str(s["remasked"])))
    if s["early_stop"] is not None:
        rows.append(("Early stop", s["early_stop"].text(_block_unit(view))))
    if view.meta.label:
        rows.append(("Source", view.meta.label))
    cells = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in rows)
    return f'<table class="dc-stats">{cells}</table>'
