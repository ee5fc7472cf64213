"""The Canvas tab's handlers without a browser (``ui.canvas_tab.make_handlers`` on the tiny model)."""

from __future__ import annotations

import pytest

from dlm_core.models import registry
from dlm_core.sampler import SamplerConfig
from ui import canvas_tab
from ui.session import Run, Session

pytestmark = pytest.mark.usefixtures("one_thread", "no_kept_sessions")



def finished_run(session: Session, prompt: str = "ROMEO:\n", steps: int = 8) -> Run:
    run = Run(registry.load_model("tiny-random"), prompt, SamplerConfig(gen_length=8, steps=steps, record_topk=True))
    session.start(run)
    while run.advance():
        pass
    run.finish()
    return run


def is_skip(value) -> bool:
    return isinstance(value, dict) and value.get("__type__") == "update" and len(value) == 1


def test_play_superseded_by_a_new_run_ends_on_a_message_that_changes_nothing(monkeypatch):
    """Issue 13 item 9: gradio repeats a stream's last message when it ends. Play ended silently when a
    Re-write replaced its run, so its last frame (slider at an old step) was repeated after the
    Re-write's final message: the slider and the heatmap's cursor went back to that step while the
    canvas showed the new run. Play must end on a message that changes nothing."""
    monkeypatch.setattr(canvas_tab.time, "sleep", lambda seconds: None)
    handlers = canvas_tab.make_handlers(canvas_tab.CanvasUI())
    session = Session()
    old = finished_run(session)
    frames = handlers["play"](session)
    canvas, step, _stats = next(frames)
    assert step == 0 and f'data-last="{old.view.last_step}"' in canvas
    finished_run(session, prompt="HAMLET:\n", steps=4)  # what Re-write does: a new run becomes the session's
    rest = list(frames)
    assert rest, "Play ended without a last message: gradio would repeat its old frame"
    assert all(is_skip(value) for value in rest[-1]), rest[-1]
    assert not any(isinstance(value, str) and 'data-last="8"' in value for message in rest for value in message)


def test_how_it_works_pictures_replay_real_runs(monkeypatch):
    """Issue 13 item 5: the pictures are real runs of the app's model, every step a frame."""
    import re

    from dlm_core.trajectory import record
    from ui import how_tab

    monkeypatch.setenv("DIFFUSION_CANVAS_MODEL", "tiny-random")
    markup = how_tab.pictures_html()
    figures = re.findall(r'<figure class="dc-replay">(.*?)</figure>', markup, re.S)
    pictures = [p for row in how_tab.PICTURES for p in row]
    assert len(figures) == len(pictures)
    model = registry.load_model("tiny-random")
    for figure, picture in zip(figures, pictures, strict=True):
        steps = record(model, how_tab.PROMPT, picture.config).num_steps
        assert figure.count('class="dc-frame"') == steps + 1, picture.title
        assert f'data-last="{steps}"' in figure
    # One token per step on the left, several per step on the right.
    assert figures[0].count('class="dc-frame"') > 2 * figures[1].count('class="dc-frame"') - 2
    assert 'class="t m r' in figures[3] or "re-masked" in figures[3]
    glossary = (how_tab.ASSETS / "how_it_works.md").read_text(encoding="utf-8")
    for term in ("NFE", "alg_temp", "CFG", "KV cache", "block length", "top-k", "threshold", "eta", "seed"):
        assert term in glossary, term
