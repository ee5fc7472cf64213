"""Session state without a browser: ``ui.session.Run`` and ``Session`` driven directly on the tiny model.

A run advances one step per ``advance`` and records the same trajectory as the engine alone; the worker
thread runs it to the end; a new run supersedes the tab's previous one; Stop (``cancel``) ends a run
within a step; closing a tab releases its run and files; ``supersede`` spares a run that just started.
"""

from __future__ import annotations

import time
from types import SimpleNamespace

import pytest

from dlm_core.models import registry
from dlm_core.sampler import SamplerConfig
from dlm_core.trajectory import record
from ui import session as ui_session
from ui.session import Run, Session, close_tab, supersede

pytestmark = pytest.mark.usefixtures("one_thread", "no_kept_sessions")

CONFIG = SamplerConfig(gen_length=8, steps=4, temperature=0.5, seed=3, record_topk=True)


@pytest.fixture
def model():
    return registry.load_model("tiny-random")



def test_a_run_advances_one_step_at_a_time_and_records_what_the_engine_does(model):
    run = Run(model, "ROMEO:\n", CONFIG)
    assert run.view.states == []
    assert run.advance()  # the initial canvas: every slot masked
    assert run.view.last_step == 0 and run.view.states[0].masked.sum() == 8
    while run.advance():
        pass
    assert run.view.complete and run.view.status == "done" and run.view.last_step == 4
    assert not run.advance()  # finished: nothing more to do
    trajectory, alone = run.finish(), record(model, "ROMEO:\n", CONFIG)
    assert [s.tokens.tolist() for s in trajectory.states] == [s.tokens.tolist() for s in alone.states]
    assert trajectory.final_text == alone.final_text
    assert run.view.final_text == trajectory.final_text
    assert run.finish() is trajectory  # decoded once


def test_the_worker_runs_to_the_end(model):
    run = Run(model, "ROMEO:\n", CONFIG)
    run.view.status = "running"
    run.start_worker()
    run.worker.join(timeout=30)
    assert not run.working and run.error is None
    assert run.view.complete and run.view.status == "done"


def test_cancel_stops_a_run_before_its_next_step(model):
    run = Run(model, "ROMEO:\n", SamplerConfig(gen_length=64, steps=64))
    run.advance()
    run.view.status = "running"
    run.cancel()
    assert run.cancelled.is_set() and run.view.status == "stopped"
    assert not run.advance() and run.view.last_step == 0
    assert run.finish().num_steps == 0  # what was written so far (nothing) is still a trajectory


def test_a_new_run_supersedes_the_tabs_previous_one(model):
    session = Session()
    first, second = Run(model, "ROMEO:\n", CONFIG), Run(model, "JULIET:\n", CONFIG)
    session.start(first)
    session.selected.add(3)
    session.shown_step = 2
    session.start(second)
    assert first.cancelled.is_set() and not second.cancelled.is_set()
    assert session.run is second and session.view is second.view
    assert session.selected == set() and session.shown_step is None


def test_closing_a_tab_releases_its_run_and_files(model):
    session = Session()
    run = Run(model, "ROMEO:\n", CONFIG)
    session.start(run)
    session.bind(SimpleNamespace(session_hash="test-ui-session"))
    folder = session.export_folder()
    (folder / "x.json").write_text("{}")
    close_tab("test-ui-session")
    assert run.cancelled.is_set() and session.run is None and session.view is None
    assert not folder.exists()
    close_tab("test-ui-session")  # a second close (or an unknown tab) is harmless


def test_supersede_spares_a_run_that_just_started(model):
    session = Session()
    run = Run(model, "ROMEO:\n", CONFIG)
    session.start(run)
    supersede(session)  # the same click that started it: a few ms old
    assert not run.cancelled.is_set()
    run.created = time.monotonic() - 2 * ui_session.SUPERSEDE_AGE
    supersede(session)
    assert run.cancelled.is_set()


def test_a_session_is_shared_not_copied_by_gradio_state():
    import copy

    session = Session()
    assert copy.deepcopy(session) is session
