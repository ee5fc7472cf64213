"""Session state, testable without a browser: ``Run`` (one live denoising run) and ``Session`` (what
one browser tab holds), and the bookkeeping that bounds their memory.

A ``Session`` object in ``gr.State`` holds the tab's current ``Run`` (the live ``denoise`` generator,
its ``TrajectoryBuilder`` and ``RunView``) and what the canvas shows. While streaming, a worker thread
runs the model and the event handler sends the newest state (``streaming``). Starting a run supersedes
the tab's previous one (its worker stops before its next step, so two runs never write to the same
page); Stop flags the run, so the sampler stops consuming CPU within one step; closing the tab does the
same (``on_unload``).
"""

from __future__ import annotations

import shutil
import tempfile
import threading
import time
import weakref
from collections import OrderedDict
from pathlib import Path
from typing import Any

from dlm_core.sampler import EncodedPrompt, SamplerConfig, denoise, prompt_text
from dlm_core.trajectory import Trajectory, TrajectoryBuilder
from dlm_core.viz import RunView

from .limits import BYTES_PER_STEP_POSITION, KEPT_RUNS_BYTES, KEPT_RUNS_MAX, MAX_RUN_SECONDS

# Tokenizers (HF fast tokenizers in particular) are not safe to *encode* from two threads at once;
# encoding happens when a run starts and decoding when it ends or a token text is first needed.
TOKENIZER_LOCK = threading.Lock()


_export_root = Path(tempfile.mkdtemp(prefix="diffusion-canvas-"))
_run_ids = iter(range(1, 1 << 62))
_id_lock = threading.Lock()


def _next_id() -> int:
    with _id_lock:
        return next(_run_ids)


class Run:
    """One denoising run: the live generator, its recorder and its view. ``advance`` is the only
    place ``next()`` is called (under ``lock``, so Step and a stream can never race).

    While streaming, a worker thread (``start_worker``) runs the model step after step and the
    event handler renders whatever is newest at its own pace: the model never waits for gradio's
    per-message work, and rendering never waits for the model (see ``_stream``).
    """

    def __init__(self, model: Any, prompt: str | EncodedPrompt, config: SamplerConfig, label: str = ""):
        self.id = _next_id()
        self.created = time.monotonic()
        self.model = model
        self.prompt = prompt_text(prompt)
        self.config = config
        with TOKENIZER_LOCK:  # encodes the prompt; raises ConfigError / PromptError before any forward pass
            self._states = denoise(model, prompt, config)
        self.builder = TrajectoryBuilder(model, prompt, config)
        self.view = RunView.for_model(model, self.prompt, config, label, token_text=self._token_text)
        self.lock = threading.Lock()
        self.cancelled = threading.Event()
        self.trajectory: Trajectory | None = None
        self.progress = threading.Event()  # set by the worker after each step and when it ends
        self.worker: threading.Thread | None = None
        self.error: BaseException | None = None
        self.model_seconds = 0.0

    def _token_text(self, token_id: int) -> str:
        with TOKENIZER_LOCK:
            return self.model.token_text(token_id)

    def advance(self) -> bool:
        """Run one model step (the first call yields the initial canvas). False when finished or cancelled."""
        with self.lock:
            if self.cancelled.is_set() or self.view.complete:
                return False
            started = time.perf_counter()
            try:
                state = next(self._states)
            except StopIteration:
                return False
            self.model_seconds += time.perf_counter() - started  # the model's time, not Step mode's pauses
            self.view.add(self.builder.add(state), model_seconds=self.model_seconds)
            if self.view.complete:
                self._drain()
                if not self.cancelled.is_set():
                    self.view.status = "done"
            return True

    def _drain(self) -> None:
        """The canvas is complete: take what the source still yields until it ends (our sampler:
        nothing; a recorded model: its closing state where its output differs from the recording,
        LLaDA 2.1's edit-only steps after the last mask), so the run ends as its source did and its
        thread is released. Stop still ends it within one step (checked between states)."""
        while not self.cancelled.is_set():
            try:
                state = next(self._states)
            except StopIteration:
                return
            self.view.add(self.builder.add(state))

    def start_worker(self) -> None:
        """Run steps in a background thread while ``view.status`` is "running" (not cancelled)."""
        if self.worker is not None and self.worker.is_alive():
            return
        self.error = None
        self.deadline = time.monotonic() + MAX_RUN_SECONDS
        self.timed_out = False
        self.worker = threading.Thread(target=self._work, name=f"diffusion-canvas-run-{self.id}", daemon=True)
        self.worker.start()

    def _work(self) -> None:
        try:
            while self.view.status == "running" and not self.cancelled.is_set():
                if time.monotonic() > self.deadline:
                    self.timed_out = True  # _stream then ends it like Stop, with a note
                    break
                if not self.advance():
                    break
                self.progress.set()
        except BaseException as error:  # noqa: BLE001 (handed to the event handler, which reports it)
            self.error = error
            self.cancel()
        finally:
            self.progress.set()

    @property
    def working(self) -> bool:
        return self.worker is not None and self.worker.is_alive()

    def cancel(self, status: str = "stopped") -> None:
        self.cancelled.set()
        if self.view.status in ("running", "paused"):
            self.view.status = status
        self._states = iter(())  # drop the sampler generator (and its tensors) now

    def finish(self) -> Trajectory:
        """The recorded trajectory (decodes the final text once)."""
        with self.lock:
            if self.trajectory is None or self.trajectory.num_steps != self.view.last_step:
                with TOKENIZER_LOCK:
                    self.trajectory = self.builder.build()
                self.view.final_text = self.trajectory.final_text
            return self.trajectory


_sessions: weakref.WeakValueDictionary[str, Session] = weakref.WeakValueDictionary()


class Session:
    """What one browser tab sees: its current run (or replay) and the canvas's view state."""

    def __init__(self) -> None:
        self.run: Run | None = None
        self.view: RunView | None = None
        self.trajectory: Trajectory | None = None
        self.shown_step: int | None = None  # None = newest
        self.pinned = False  # the user scrubbed during a live run: stop moving the canvas
        self.selected: set[int] = set()
        self.inspected: int | None = None
        self.projector = False  # projector mode: a taller heatmap with projector-sized text
        self.play_id = 0
        self.folder: Path | None = None
        self.exported: Trajectory | None = None  # the trajectory whose files the downloads offer
        self.lock = threading.Lock()

    def __deepcopy__(self, memo: dict) -> Session:  # gr.State copies its value; a session is per tab
        return self

    def bind(self, request: Any) -> None:
        """Remember this session under the gr.Request's session hash, so ``close_tab`` can find it."""
        key = getattr(request, "session_hash", None)
        if key:
            _sessions[key] = self

    def start(self, run: Run) -> None:
        """Make ``run`` current; the previous run of this tab stops before its next step."""
        self._show(run, run.view, None)

    def show_replay(self, view: RunView, trajectory: Trajectory) -> None:
        """Show a recorded run (an uploaded file); the tab's live run, if any, stops."""
        self._show(None, view, trajectory)

    def _show(self, run: Run | None, view: RunView, trajectory: Trajectory | None) -> None:
        with self.lock:
            if self.run is not None and self.run is not run:
                self.run.cancel()
            self.run, self.view, self.trajectory = run, view, trajectory
            self.shown_step = None
            self.pinned = False
            self.selected.clear()
            self.inspected = None
            self.play_id += 1
        keep(self)

    def close(self) -> None:
        """Stop the run and release everything this tab holds (tab closed, state deleted, or evicted)."""
        with self.lock:
            if self.run is not None:
                self.run.cancel()
            self.play_id += 1
            self.run, self.view, self.trajectory, self.exported = None, None, None, None
            self.selected.clear()
            if self.folder is not None:
                shutil.rmtree(self.folder, ignore_errors=True)
                self.folder = None

    def kept_bytes(self) -> int:
        view = self.view
        if view is None or not view.states:
            return 0
        return len(view.states) * int(view.states[0].tokens.shape[0]) * BYTES_PER_STEP_POSITION

    def export_folder(self) -> Path:
        if self.folder is None:
            self.folder = Path(tempfile.mkdtemp(prefix="session-", dir=_export_root))
        return self.folder


_kept: OrderedDict[int, weakref.ref[Session]] = OrderedDict()  # least recently started first
_kept_lock = threading.Lock()


def keep(session: Session) -> None:
    """``session`` now holds a new run or replay: count it, and release the least recently started idle
    sessions while more than KEPT_RUNS_MAX are kept or they hold more than KEPT_RUNS_BYTES."""
    released = []
    with _kept_lock:
        _kept[id(session)] = weakref.ref(session)
        _kept.move_to_end(id(session))
        alive = [(key, ref()) for key, ref in _kept.items()]
        for key, other in alive:
            if other is None:
                del _kept[key]
        alive = [(key, other) for key, other in alive if other is not None]
        total = sum(other.kept_bytes() for _, other in alive)
        for key, other in alive[:-1]:
            if len(_kept) <= KEPT_RUNS_MAX and total <= KEPT_RUNS_BYTES:
                break
            if other.run is not None and other.run.working:
                continue  # streaming right now: it is released once it is no longer the newest
            total -= other.kept_bytes()
            del _kept[key]
            released.append(other)
    for other in released:
        other.close()


def new_session() -> Session:
    return Session()


def close_session(session: Any) -> None:
    if isinstance(session, Session):
        session.close()


def close_tab(session_hash: str) -> None:
    """The tab closed: stop its run now (gr.State itself is only deleted an hour later)."""
    session = _sessions.pop(session_hash, None)
    if session is not None:
        session.close()


SUPERSEDE_AGE = 0.3  # seconds


def supersede(session: Session) -> None:
    """Generate was clicked: stop this tab's running run now, before the new one is even queued.

    Only a run older than ``SUPERSEDE_AGE`` is stopped: this unqueued listener and the queued one
    that starts the new run fire on the same click, and the new run (a few ms old if it won the
    race) must survive. A quick double click is still handled: the new run's ``Session.start``
    supersedes the old one either way."""
    run = session.run if isinstance(session, Session) else None
    if run is not None and time.monotonic() - run.created > SUPERSEDE_AGE:
        run.cancel()

