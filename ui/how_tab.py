"""The "How it works" tab: moving pictures replayed from real runs, then the explanation page and its
glossary (``assets/how_it_works.md``); no events.

The pictures are small canvases that play on a loop in the browser: each is a real run of the app's
model, recorded once when the app starts (a few tenths of a second on the built-in model), every
step rendered by ``dlm_core.viz.canvas_html`` and stacked in one HTML block that ``REPLAY_JS``
steps through. Nothing is stored: a different model (tests use the tiny one) gives its own pictures.
"""

from __future__ import annotations

import html
import logging
from dataclasses import dataclass

import gradio as gr

from dlm_core.sampler import SamplerConfig
from dlm_core.trajectory import record
from dlm_core.viz import RunView, canvas_html

from . import ASSETS
from .models import default_model_key, get_model
from .session import TOKENIZER_LOCK

log = logging.getLogger("diffusion_canvas")

PROMPT = "ROMEO:\n"
LENGTH = 24


@dataclass(frozen=True)
class Picture:
    title: str
    caption: str
    config: SamplerConfig


PICTURES = (
    (
        Picture("One token at a time (like GPT)", "Left to right: one token per step, 24 steps.",
                SamplerConfig(gen_length=LENGTH, strategy="left_to_right", temperature=0.0)),
        Picture("Diffusion: the surest first", "All 24 blanks at once; 3 tokens per step, anywhere, in 8 steps.",
                SamplerConfig(gen_length=LENGTH, steps=8, strategy="low_confidence", temperature=0.0)),
    ),
    (
        Picture("In blocks of 8", "Diffusion inside each block, the blocks left to right.",
                SamplerConfig(gen_length=LENGTH, steps=12, block_length=8, strategy="low_confidence",
                              temperature=0.0)),
        Picture("Re-masking (ReMDM)", "Red dashed boxes: tokens taken back; underlined: rewritten differently.",
                SamplerConfig(gen_length=LENGTH, steps=24, strategy="low_confidence", temperature=0.8, seed=1,
                              remask="cap", eta=0.1)),
    ),
)

# Shows the frames of every ``.dc-replay`` in turn (one every 350 ms, a pause at the end), on a loop.
REPLAY_JS = """
const replays = element.querySelectorAll('.dc-replay');
replays.forEach((replay) => {
  const frames = replay.querySelectorAll('.dc-frame');
  let k = 0, wait = 0;
  const show = () => frames.forEach((f, i) => { f.style.display = i === k ? 'block' : 'none'; });
  show();
  setInterval(() => {
    if (!element.isConnected || !frames.length) return;
    if (k === frames.length - 1 && wait++ < 6) return;
    wait = 0; k = (k + 1) % frames.length; show();
  }, 350);
});
"""


def picture_html(picture: Picture, model) -> str:
    """One picture: its title, the run's frames (every step), its caption."""
    with TOKENIZER_LOCK:
        trajectory = record(model, PROMPT, picture.config)
    view = RunView.from_trajectory(trajectory)
    view.status = "done"
    frames = "".join(
        f'<div class="dc-frame" style="display:{"block" if step == 0 else "none"}">'
        f"{canvas_html(view, step, titles=False, status='running')}</div>"
        for step in range(view.last_step + 1)
    )
    return (
        f'<figure class="dc-replay"><figcaption><b>{html.escape(picture.title)}</b></figcaption>{frames}'
        f'<figcaption class="dc-replay-caption">{html.escape(picture.caption)}</figcaption></figure>'
    )


def pictures_html() -> str:
    """Every picture, two side by side per row; a note instead if the model cannot run them."""
    try:
        model, _ = get_model(default_model_key())
        if model.kind != "diffusion":
            raise ValueError(f"{model.name} is not a diffusion model")
        rows = []
        for row in PICTURES:
            rows.append('<div class="dc-replay-row">' + "".join(picture_html(p, model) for p in row) + "</div>")
    except Exception as error:  # noqa: BLE001 (the explanation page must load whatever the model does)
        log.warning("How it works: no replays (%s)", error)
        return '<div class="dc-replay-note">The moving pictures need a diffusion model.</div>'
    return (
        '<div class="dc-replays"><p>Real runs of the model on this page, replayed on a loop '
        f"(prompt {html.escape(repr(PROMPT))}, {LENGTH} tokens):</p>{''.join(rows)}</div>"
    )


def create_ui() -> None:
    text = (ASSETS / "how_it_works.md").read_text(encoding="utf-8")
    intro, _, rest = text.partition("### What the colours mean")
    gr.Markdown(intro, elem_id="dc-howto-intro", elem_classes=["dc-howto"])
    gr.HTML(pictures_html(), elem_id="dc-howto-pictures", js_on_load=REPLAY_JS, apply_default_css=False)
    gr.Markdown("### What the colours mean" + rest, elem_id="dc-howto", elem_classes=["dc-howto"])
