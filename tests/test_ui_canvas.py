"""The Canvas tab's handlers without a browser (``ui.canvas_tab.make_handlers`` on the tiny model)."""

from __future__ import annotations

import pytest

from dlm_core.models import registry
from dlm_core.sampler import SamplerConfig
from ui import canvas_tab
from ui import session as ui_session
from ui.session import Run, Session

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(autouse=True)
def no_kept_sessions():
    saved = dict(ui_session._kept)
    ui_session._kept.clear()
    yield
    ui_session._kept.clear()
    ui_session._kept.update(saved)


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
