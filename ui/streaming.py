"""Sending a run to the page as it happens, and the canvas outputs of a run.

``stream`` runs the model in the ``Run``'s worker thread and sends the newest state by the rule in
``dlm_core.viz.stream`` (``UpdatePolicy``): every step up to 30 frames/s, the heatmap throttled.
``settle`` is everything for a view that is not streaming; ``write_exports`` writes the downloads. ``ui`` is
the canvas tab's components (``canvas_tab.CanvasUI``); outputs are addressed by name, never index.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import gradio as gr
from gradio.components.plot import PlotData

from dlm_core.trajectory import Trajectory
from dlm_core.viz import (
    RunView,
    UpdatePolicy,
    canvas_html,
    empty_canvas_html,
    empty_heatmap_dict,
    heatmap_dict,
    inspector_html,
    standalone_html,
    stats_html,
    to_json,
)

from .errors import for_client
from .limits import MAX_RUN_SECONDS
from .session import Run, Session

# Slow models (>= this many seconds a step, e.g. an 8B model on CPU) get tooltips with the top-5 guesses live.
SLOW_STEP_SECONDS = 0.25

EMPTY_INSPECTOR = (
    '<div class="dc-inspect dc-empty">Click any token or mask in the canvas to see what the model was '
    "considering for it at the step shown: its top guesses and how sure it was.</div>"
)
RESUME_LABEL = "Continue ▶"
EMPTY_STATS = '<div class="dc-stats dc-empty">Statistics appear here once a run starts.</div>'


HEATMAP_SIZE = {"height": 430, "font_size": 12}  # beside the canvas on a 1440 x 900 screen
PROJECTOR_HEATMAP_SIZE = {"height": 470, "font_size": 18}  # text a class can read from the back


def heatmap_size(session: Session) -> dict:
    """The heatmap's height and font size for this tab (larger in projector mode)."""
    return PROJECTOR_HEATMAP_SIZE if getattr(session, "projector", False) else HEATMAP_SIZE


def plot(figure: dict) -> PlotData:
    """A figure dict as gr.Plot's value (our compact JSON, not plotly.graph_objects)."""
    return PlotData(type="plotly", plot=to_json(figure))



# The outputs of every event that shows a run (Generate, Step, Continue, Stop, Re-write, Replay), in
# order: API clients and tests address them by these names (``RUN_OUTPUTS.index("canvas")``).
RUN_OUTPUTS = (
    "canvas",
    "heatmap",
    "scrub",
    "stats",
    "final_text",
    "inspector",
    "download_json",
    "download_html",
    "resume",
    "selection",
)


def run_outputs(ui: Any) -> list[Any]:
    return [getattr(ui, name) for name in RUN_OUTPUTS]


def settle(ui: Any, session: Session, view: RunView, *, status: str | None = None, note: str = "") -> dict:
    """Everything for a view that is not streaming (paused, finished, stopped, replayed, scrubbed)."""
    step = view.last_step if session.shown_step is None else view.clamp(session.shown_step)
    return {
        ui.canvas: canvas_html(
            view, step, detail=True, selected=session.selected, inspected=session.inspected, status=status, note=note
        ),
        ui.heatmap: plot(heatmap_dict(view, cursor=step, revision=str(id(view)), **heatmap_size(session))),
        ui.scrub: gr.update(maximum=max(1, view.last_step), value=step),
        ui.stats: stats_html(view, step),
        ui.inspector: inspector_html(view, step, session.inspected),
        ui.resume: gr.update(visible=view.status == "paused"),
    }


def write_exports(ui: Any, session: Session, trajectory: Trajectory, view: RunView) -> dict:
    """Write the trajectory JSON and the offline HTML replay of the shown run (once per run)."""
    if session.exported is trajectory:
        return {}
    session.exported = trajectory
    folder = session.export_folder()
    json_path = folder / "diffusion-canvas-trajectory.json"
    html_path = folder / "diffusion-canvas-replay.html"
    json_path.write_text(trajectory.to_json(), encoding="utf-8")
    html_path.write_text(standalone_html(view), encoding="utf-8")
    return {
        ui.download_json: gr.update(value=str(json_path), interactive=True),
        ui.download_html: gr.update(value=str(html_path), interactive=True),
    }


def stream(ui: Any, session: Session, run: Run, extra: dict | None = None) -> Iterator[dict]:
    """Stream ``run`` to the end: a worker thread runs the model, this loop sends the newest state
    by the ``UpdatePolicy`` rule (every step up to 30 frames/s, the heatmap throttled). ``extra``:
    plain values for further outputs of the event, sent with every message.

    Every message carries every output: ``held`` keeps the last value sent to each. gradio sends a
    stream's messages as diffs that the browser applies *in place*: a skipped output after a figure
    is diffed into an empty update, which deletes the figure from the object the plot component is
    about to draw (seen as a heatmap stuck at its first frame). Unchanged outputs are re-sent as the
    same plain values, not gr.skip(): gradio turns a skip into a property update that rebuilds the
    component (~1.5 ms each, measured), while an identical value costs a few microseconds and
    nothing on the wire."""
    view = run.view
    view.status = "running"
    policy = UpdatePolicy()
    held: dict = {}
    extra = extra or {}
    run.start_worker()

    def current() -> bool:
        return session.run is run and not run.cancelled.is_set()

    try:
        while True:
            run.progress.wait(timeout=0.5)
            run.progress.clear()
            if run.error is not None:
                raise run.error
            if not current() or view.status == "paused":
                return  # superseded, stopped (Stop shows the result) or paused (Step took over)
            if view.complete or not run.working:
                break
            if not view.states or view.last_step == policy.shown_step:
                continue
            update, step = _frame_update(ui, session, view, policy)
            if not update:
                continue
            message = {**held, **extra, **update} if held else {**_reset_panels(ui), **extra, **update}
            _hold(ui, session, held, update, step)
            yield message
            time.sleep(policy.until_next_canvas())  # frame pacing: steps arriving meanwhile are folded in
    except GeneratorExit:  # the event was cancelled (Stop, tab closed): the worker stops after its step
        run.cancel()
        raise
    if current() and view.status != "paused":
        yield from _finish(ui, session, run, {**held, **extra})


def _frame_update(ui: Any, session: Session, view: RunView, policy: UpdatePolicy) -> tuple[dict, int]:
    """The outputs to send for the newest state (may be none yet: the policy paces them), and its step.

    The first frame is always step 0 (every slot a mask: where diffusion starts); then the newest
    state (consistent even while the worker adds the next one), highlighting everything written
    since the last frame shown."""
    frame = view.frame(0) if policy.shown_step < 0 else view.frame(None, since=policy.shown_step)
    step = frame.step
    send_canvas, send_heatmap = policy.decide(step, view.heat(step).size)
    update: dict = {}
    if send_canvas and not session.pinned:
        # Slow models (>= 0.25 s a step, e.g. an 8B model on CPU) get tooltips with the top-5
        # guesses live; for fast ones tooltips would only inflate every frame (~40 % of its
        # bytes) and change before anyone hovers. Clicking a token inspects it either way.
        slow = step > 0 and frame.elapsed / step >= SLOW_STEP_SECONDS
        update[ui.canvas] = canvas_html(view, frame=frame, status="running", detail=slow, titles=slow)
        policy.mark_shown(step)
    if send_heatmap:
        update[ui.heatmap] = plot(
            heatmap_dict(view, upto=step, revision=str(id(view)), detail=False, **heatmap_size(session))
        )
        update[ui.stats] = stats_html(view, step)
        update[ui.scrub] = gr.update(maximum=max(1, step), **({} if session.pinned else {"value": step}))
    return update, step


def _reset_panels(ui: Any) -> dict:
    """The first message of a run also resets the side panels of the previous run, and the slider:
    gradio sends a stream's later messages as diffs against this event's own earlier ones, so an
    output this stream never set (a slider another event, e.g. Play, just moved) would keep the
    other event's value while this stream's diffs assume their own (issue 13, item 9)."""
    return {
        ui.scrub: gr.update(maximum=1, value=0),
        ui.resume: gr.update(visible=False),
        ui.final_text: "",
        ui.inspector: EMPTY_INSPECTOR,
        ui.download_json: gr.update(value=None, interactive=False),
        ui.download_html: gr.update(value=None, interactive=False),
        ui.selection: "No tokens picked yet.",
    }


def _hold(ui: Any, session: Session, held: dict, update: dict, step: int) -> None:
    """Remember, as plain values, what the page now shows for every output (see ``stream``)."""
    if not held:
        held.update(
            {
                ui.resume: RESUME_LABEL,
                ui.final_text: "",
                ui.inspector: EMPTY_INSPECTOR,
                ui.download_json: None,
                ui.download_html: None,
                ui.selection: "No tokens picked yet.",
                ui.canvas: update.get(ui.canvas, empty_canvas_html()),
                ui.heatmap: update.get(ui.heatmap, plot(empty_heatmap_dict(**heatmap_size(session)))),
                ui.stats: update.get(ui.stats, EMPTY_STATS),
                ui.scrub: 0,
            }
        )
    for component in (ui.canvas, ui.heatmap, ui.stats):
        if component in update:
            held[component] = update[component]
    if ui.scrub in update and not session.pinned:
        held[ui.scrub] = step


def _finish(ui: Any, session: Session, run: Run, held: dict) -> Iterator[dict]:
    """The run ended (finished, or reached its time limit): the settled view with its final text,
    then the downloads. ``held``: every output's last value (plus the event's extra outputs)."""
    view = run.view
    view.status = "done" if view.complete else "stopped"
    trajectory = run.finish()
    session.trajectory = trajectory
    if not session.pinned:
        session.shown_step = None
    note = ""
    if getattr(run, "timed_out", False) and not view.complete:
        note = f"Stopped after {view.last_step} steps: a run may use at most {MAX_RUN_SECONDS:g} s of model time."
        gr.Warning(for_client(note))
    final = {
        ui.download_json: None,
        ui.download_html: None,
        ui.selection: "No tokens picked yet.",
        **held,
        **settle(ui, session, view, note=note),
    }
    final[ui.final_text] = trajectory.final_text
    # The slider's range first, its value in the next message: the browser could drop a value that
    # arrived together with a larger maximum (seen after a Re-write during Play: canvas and slider
    # disagreed, issue 13 item 9).
    slider = final[ui.scrub]
    yield {**final, ui.scrub: gr.update(maximum=slider["maximum"])}
    yield {**final, **write_exports(ui, session, trajectory, view)}
