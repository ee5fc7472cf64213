"""The Canvas tab: prompt, settings, live canvas, heatmap, inspector, stats, export.

``create_ui`` lays it out and returns its components by name (``CanvasUI``); ``make_handlers`` holds
one small function per event; ``create_events`` connects them (concurrency groups, cancellation).
"""

from __future__ import annotations

import html
import json
import os
import time
from pathlib import Path
from typing import Any

import gradio as gr

from dlm_core.models import registry
from dlm_core.sampler import STRATEGIES, EncodedPrompt, canvas_prompt
from dlm_core.trajectory import Trajectory
from dlm_core.viz import (
    CURSOR_JS,
    RunView,
    canvas_html,
    edit_canvas,
    edit_prompt,
    editable_positions,
    empty_canvas_html,
    empty_heatmap_dict,
    heatmap_dict,
    inspector_html,
    legend_html,
    stats_html,
)
from dlm_core.viz.export import play_interval_ms

from . import ASSETS
from .errors import check_number, for_client, guarded, read_input, user_error
from .limits import (
    INFERENCE_CONCURRENCY,
    MAX_UPLOAD_BYTES,
    MAX_UPLOAD_CONTAINERS,
    UPLOAD_LIMIT_TEXT,
)
from .models import checked_model_name, default_model_key, get_model, model_choices, model_note_html
from .session import Run, Session, supersede
from .settings import (
    DREAM_STRATEGIES,
    SAMPLER_WIDGETS,
    SETTINGS,
    START_VALUES,
    build_config,
    setting_widget,
)
from .streaming import (
    EMPTY_INSPECTOR,
    EMPTY_STATS,
    HEATMAP_SIZE,
    RESUME_LABEL,
    heatmap_size,
    plot,
    run_outputs,
    settle,
    stream,
    write_exports,
)


def load_examples() -> list[dict[str, Any]]:
    """The examples of ``assets/examples.json`` whose model this checkout lists (an example without a
    ``model`` runs on the app's default model; the code examples appear once the code model is trained)."""
    examples = json.loads((ASSETS / "examples.json").read_text(encoding="utf-8"))
    listed = [e for e in examples if "model" not in e or e["model"] in registry.REGISTRY]
    return [{"model": default_model_key(), **e} for e in listed]


CANVAS_JS = """
// A click on a token inspects it (the server fills #dc-inspector); the inspector opens as a panel
// beside that token, below it or above it where there is room (a bottom sheet on a phone).
const panel = () => document.querySelector('#dc-inspector');
const closePanel = () => { const p = panel(); if (p) p.classList.remove('dc-pop-open'); };
element.addEventListener('click', (event) => {
  const span = event.target.closest('[data-i]');
  if (!span || !element.contains(span)) return;
  trigger('token', {index: Number(span.dataset.i)});
  const pick = document.querySelector('#dc-pick input[type=checkbox]');
  const p = panel();
  if (!p || (pick && pick.checked)) return;
  if (!p.querySelector('.dc-close')) {
    const close = document.createElement('button');
    close.className = 'dc-close'; close.type = 'button'; close.textContent = '\u00d7';
    close.setAttribute('aria-label', 'Close the inspector');
    close.addEventListener('click', closePanel);
    p.prepend(close);
  }
  const r = span.getBoundingClientRect();
  const width = Math.min(440, window.innerWidth - 16);
  p.style.left = Math.max(8, Math.min(r.left, window.innerWidth - width - 8)) + 'px';
  if (window.innerHeight - r.bottom > 320 || r.top < window.innerHeight - r.bottom) {
    p.style.top = (r.bottom + 8) + 'px'; p.style.bottom = 'auto';
  } else {
    p.style.bottom = (window.innerHeight - r.top + 8) + 'px'; p.style.top = 'auto';
  }
  p.classList.add('dc-pop-open');
});
if (!window.__dcInspectorKeys) {
  window.__dcInspectorKeys = true;
  document.addEventListener('keydown', (event) => { if (event.key === 'Escape') closePanel(); });
  document.addEventListener('click', (event) => {
    if (!event.target.closest('#dc-inspector') && !event.target.closest('#dc-canvas')
        && !event.target.closest('#dc-scrub')) closePanel();
  });
}
"""

# On a narrow screen (a phone) the settings panel starts closed: open, it would cover the whole page.
NARROW_SCREEN_JS = """
() => {
  if (window.innerWidth >= 900) return [];
  const panel = document.querySelector('#dc-settings');
  const toggle = panel && panel.querySelector('.toggle-button');
  if (panel && toggle && panel.classList.contains('open')) toggle.click();
  return [];
}
"""

PROJECTOR_JS = (
    "(on) => { const root = document.querySelector('#dc-root');"
    " if (root) root.classList.toggle('dc-projector', !!on);"
    " setTimeout(() => window.dispatchEvent(new Event('resize')), 60); return []; }"  # plotly re-fits its width
)


class CanvasUI:
    """The components of the Canvas tab by name (``ui.canvas``, ``ui.steps``), built by ``create_ui``."""

    def __init__(self) -> None:
        self.c: dict[str, Any] = {}

    def __getattr__(self, name: str) -> Any:
        try:
            return self.__dict__["c"][name]
        except KeyError:
            raise AttributeError(name) from None


def create_ui() -> CanvasUI:
    """The main tab's layout, one screen (1440 x 900) for a class: prompt and buttons on top, the live
    canvas beside the heatmap below them, the step slider under the canvas; the settings in a
    collapsible side panel; the inspector opens beside the token clicked; stats, final text and
    downloads below the fold."""
    ui = CanvasUI()
    c = ui.c
    model, note = get_model(default_model_key())
    examples = load_examples()
    # The page opens on the first example's settings, so Generate and a click on that example give the same run.
    first_example = {**START_VALUES, **examples[0]}
    with gr.Sidebar(label="Settings", open=True, width=300, elem_id="dc-settings") as settings_panel:
        gr.Markdown("### Examples and settings", elem_id="dc-settings-head")
        with gr.Column(elem_id="dc-examples") as examples_column:
            pass  # filled below, once every input the examples set exists
        c["model"] = gr.Dropdown(
            choices=model_choices(),
            value=default_model_key(),
            label="Model",
            info="Which model writes. The built-in one learned from Shakespeare's plays.",
            allow_custom_value=True,  # also mlm:<repo id>; unknown names get a clear message
            elem_id="dc-model",
        )
        kind = model.kind
        # Every sampler setting's widget comes from the settings table (ui.settings.setting_widget);
        # only the layout, and what depends on the model, is decided here.
        first = "left_to_right" if kind == "autoregressive" else first_example["strategy"]
        c["strategy"] = setting_widget("strategy", value=first)
        for name in ("gen_length", "steps", "block_length"):
            c[name] = setting_widget(name, value=first_example[name])
        with gr.Accordion("Sampling", open=False):
            for name in ("temperature", "top_k", "top_p", "seed"):
                c[name] = setting_widget(name, value=first_example[name])
        with gr.Accordion("Strategy settings", open=False, visible=True) as strategy_box:
            for name in ("threshold", "factor", "gamma", "eps"):
                # shown for their strategies (strategy_changed)
                c[name] = setting_widget(name, value=first_example[name], visible=False)
            c["order_temperature"] = setting_widget(
                "order_temperature", value=first_example["order_temperature"], visible=kind != "autoregressive"
            )
            c["no_strategy_settings"] = gr.Markdown(
                "This strategy has no extra settings.", visible=kind == "autoregressive"
            )
        c["strategy_box"] = strategy_box
        with gr.Accordion("Revision: re-masking (ReMDM) and token editing", open=False) as remask_box:
            for name in ("remask", "eta", "remask_t_on", "remask_t_off", "edit_threshold", "edit_post_steps"):
                c[name] = setting_widget(name, value=first_example[name])
        c["remask_box"] = remask_box
        with gr.Accordion("Noise: masks or random tokens (uniform-state)", open=False) as noise_box:
            for name in ("noise", "final_temperature", "stop_confidence"):
                c[name] = setting_widget(name, value=first_example[name])
        c["noise_box"] = noise_box
        with gr.Accordion("Guidance and speed", open=False) as cfg_box:
            for name in ("cfg_scale", "cache"):
                c[name] = setting_widget(name, value=first_example[name])
        c["cfg_box"] = cfg_box
        c["settings"] = settings_panel
        c["projector"] = gr.Checkbox(
            label="Projector mode",
            value=False,
            info="Big text for a classroom; hides the examples.",
            elem_id="dc-projector",
        )
    with gr.Row(equal_height=False, elem_id="dc-top"):
        c["prompt"] = gr.Textbox(
            label="Prompt",
            value=first_example["prompt"],
            lines=2,
            max_lines=8,
            scale=5,
            info="The model continues your text. [MASK] = one blank for it to fill, [MASK:5] = five "
            "(\\[MASK for a literal [MASK).",
            elem_id="dc-prompt",
        )
        with gr.Column(scale=1, min_width=170, elem_id="dc-actions"):
            c["generate"] = gr.Button("Generate", variant="primary", elem_id="dc-generate")
            with gr.Row(elem_id="dc-actions-row"):
                c["step"] = gr.Button("Step ▸", min_width=60, elem_id="dc-step")
                c["stop"] = gr.Button("Stop ■", variant="stop", min_width=60, elem_id="dc-stop")
            c["resume"] = gr.Button(RESUME_LABEL, visible=False, elem_id="dc-continue")
    with gr.Row(elem_id="dc-main", equal_height=False):
        with gr.Column(scale=3, min_width=320, elem_id="dc-display"):
            c["canvas"] = gr.HTML(
                empty_canvas_html(), elem_id="dc-canvas", js_on_load=CANVAS_JS, apply_default_css=False
            )
            with gr.Row(elem_id="dc-player", equal_height=True):
                c["scrub"] = gr.Slider(
                    0,
                    1,
                    value=0,
                    step=1,
                    label="Step shown",
                    scale=5,
                    min_width=200,
                    info="Drag to replay the canvas and heatmap at any step.",
                    elem_id="dc-scrub",
                )
                c["play"] = gr.Button("▶ Play", scale=1, min_width=80, elem_id="dc-play")
        with gr.Column(scale=2, min_width=300, elem_id="dc-side"):
            c["heatmap"] = gr.Plot(
                plot(empty_heatmap_dict(**HEATMAP_SIZE)), show_label=False, elem_id="dc-heatmap"
            )
            gr.HTML(legend_html(), elem_id="dc-legend")
            c["model_note"] = gr.HTML(model_note_html(model, note), elem_id="dc-model-note")
    # The inspector: a panel that opens beside the token clicked (CANVAS_JS places it; style.css).
    c["inspector"] = gr.HTML(EMPTY_INSPECTOR, elem_id="dc-inspector", apply_default_css=False)
    with gr.Row(equal_height=True, elem_id="dc-options"):
        c["pick"] = gr.Checkbox(
            label="Pick tokens to re-write",
            value=False,
            info="Click written tokens to mark them, then let the model re-write only those.",
            elem_id="dc-pick",
        )
    with gr.Row(visible=False, equal_height=True) as pick_row:
        c["selection"] = gr.Markdown("No tokens picked yet.", elem_id="dc-selection")
        c["rewrite"] = gr.Button("Re-write picked tokens", variant="primary", elem_id="dc-rewrite")
        c["clear_pick"] = gr.Button("Clear", elem_id="dc-clear-pick")
    c["pick_row"] = pick_row
    with gr.Row(equal_height=False):
        with gr.Column(scale=1, min_width=260):
            c["stats"] = gr.HTML(EMPTY_STATS, elem_id="dc-stats", apply_default_css=False)
        with gr.Column(scale=1, min_width=260):
            c["final_text"] = gr.Textbox(
                label="Final text",
                lines=4,
                max_lines=16,
                interactive=False,
                buttons=["copy"],
                elem_id="dc-final-text",
            )
            with gr.Row():
                c["download_json"] = gr.DownloadButton(
                    "Trajectory (.json)", value=None, interactive=False, size="sm", elem_id="dc-download-json"
                )
                c["download_html"] = gr.DownloadButton(
                    "Offline replay (.html)",
                    value=None,
                    interactive=False,
                    size="sm",
                    elem_id="dc-download-html",
                )
                c["upload"] = gr.UploadButton(
                    "Replay a .json file",
                    file_types=[".json"],
                    type="filepath",
                    size="sm",
                    elem_id="dc-upload",
                )
    with examples_column:
        # Every setting is part of an example (missing keys take START_VALUES), so clicking one
        # always reproduces the same run whatever was changed before.
        example_fields = list(SETTINGS)
        defaults = {**START_VALUES, "model": default_model_key()}
        c["examples"] = gr.Examples(
            examples=[[{**defaults, **e}[name] for name in example_fields] for e in examples],
            inputs=[c[name] for name in example_fields],
            example_labels=[e["label"] for e in examples],
            label="Examples: click one, then Generate (they set every setting)",
            examples_per_page=10,
        )
    return ui




def make_handlers(ui: CanvasUI) -> dict[str, Any]:  # noqa: C901 (one closure per event, all small)
    def new_run(session: Session, values: dict[str, Any], label: str = "", edit: RunView | None = None) -> Run:
        """Start a run of ``values``; with ``edit``, re-write the picked tokens of that shown run."""
        model, note = get_model(values["model"])
        config, clamp_note = build_config(
            values["prompt"],
            model.kind,
            own_sampler=getattr(model, "run_states", None) is not None,  # steps per block, not in total
            **{k: values[k] for k in SAMPLER_WIDGETS},
        )
        if clamp_note:
            gr.Warning(for_client(clamp_note))
        prompt: str | EncodedPrompt = values["prompt"]
        if edit is not None and edit.meta.model == model.name and edit.meta.mask_id == model.mask_id:
            # The same model wrote it: reuse its token ids (no re-tokenising, no second chat template).
            # Another model gets the edit as text, which its own tokenizer encodes.
            prompt = canvas_prompt(model, *edit_canvas(edit, session.selected), text=values["prompt"])
        run = Run(model, prompt, config, label=label)
        session.start(run)
        return run

    def read_settings(raw: dict[str, Any]) -> dict[str, Any]:
        """The settings as sent (raw: these events skip gradio's preprocessing), each checked by its widget."""
        return {name: read_input(getattr(ui, name), raw[name]) for name in SETTINGS}

    # Generate, Step and Re-write take every setting as a keyword argument (``inputs_kwargs``): gradio's
    # API names the parameters after those keywords, so clients pass ``steps=16``, not a position.
    @guarded
    def generate(session: Session, request: gr.Request, **settings: Any):
        """Start a new run with these settings and stream it to the end."""
        session.bind(request)
        run = new_run(session, read_settings(settings))
        yield from stream(ui, session, run)

    @guarded
    def step(session: Session, request: gr.Request, **settings: Any):
        """Advance the current run by one step (pausing a live one); start a paused run if none."""
        session.bind(request)
        values = read_settings(settings)
        run = session.run
        if run is not None and run.view.status == "running":
            run.view.status = "paused"
        elif run is None or run.view.status != "paused" or session.view is not run.view:
            run = new_run(session, values)
            run.view.status = "paused"
            run.advance()  # the initial canvas: every slot masked
            session.shown_step = None
            out = settle(ui, session, run.view, note="Press Step again to run the first denoising step.")
            out.update(
                {
                    ui.final_text: "",
                    ui.download_json: gr.update(value=None, interactive=False),
                    ui.download_html: gr.update(value=None, interactive=False),
                }
            )
            return out
        run.advance()
        session.shown_step = None
        session.pinned = False
        view = run.view
        if view.complete:
            trajectory = run.finish()
            session.trajectory = trajectory
            out = settle(ui, session, view)
            out[ui.final_text] = trajectory.final_text
            out.update(write_exports(ui, session, trajectory, view))
            return out
        return settle(ui, session, view)

    @guarded
    def resume(session: Session, request: gr.Request):
        """Continue a paused run to the end."""
        session.bind(request)
        run = session.run
        if run is None or run.view.status != "paused":
            gr.Info("Nothing is paused: press Generate for a new run.")
            return
        yield from stream(ui, session, run)

    def stop(session: Session):
        """Stop the run (or replay animation); show what was written so far."""
        session.play_id += 1
        run = session.run
        if run is None or run.view.status not in ("running", "paused"):
            return gr.skip()
        run.cancel()
        with run.lock:  # wait for the step in flight (at most one) so the view is final
            pass
        view = run.view
        view.status = "stopped"
        trajectory = run.finish()
        session.trajectory = trajectory
        session.shown_step = None
        session.pinned = False
        out = settle(ui, session, view, note=f"Stopped after {view.last_step} steps; masks left are still masked.")
        out[ui.final_text] = trajectory.final_text
        return out  # the downloads follow in `exports` (chained), so Stop answers at once

    def exports(session: Session):
        """Build the downloads of the shown run if they are not there yet (after Stop)."""
        view, trajectory = session.view, session.trajectory
        if view is None or trajectory is None or view.status == "running":
            return gr.skip()
        return write_exports(ui, session, trajectory, view) or gr.skip()

    def scrub(session: Session, value: Any):
        """Show the canvas at the step picked on the slider."""
        # ``value`` arrives unprocessed (``preprocess=False``): checked against the shown run's steps.
        view = session.view
        last = view.last_step if view is not None and view.states else 0
        value = check_number(ui.scrub.label, 0, max(1, last), value, integer=True)
        if view is None or not view.states:
            return gr.skip()
        step = view.clamp(value)
        session.play_id += 1  # dragging the slider ends a Play in progress
        live = view.status == "running"
        session.pinned = live and step < view.last_step
        session.shown_step = None if (live and not session.pinned) or step == view.last_step else step
        out = {
            ui.canvas: canvas_html(
                view,
                step,
                detail=True,
                selected=session.selected,
                inspected=session.inspected,
                status="running" if live else None,
                note="Live run continues; drag to the right end to follow it again." if session.pinned else "",
            ),
            ui.stats: stats_html(view, step),
            ui.inspector: inspector_html(view, step, session.inspected),
        }
        return out

    def token_clicked(session: Session, pick: bool, event: gr.EventData):
        """Inspect a position, or (pick mode) mark it for re-writing."""
        view = session.view
        try:
            index = int(event.index)
        except (AttributeError, TypeError, ValueError):
            return gr.skip()
        if view is None or not view.states or not 0 <= index < view.length:
            return gr.skip()
        step = view.last_step if session.shown_step is None else view.clamp(session.shown_step)
        out: dict = {}
        if pick:
            if view.status in ("running",):
                gr.Info("Wait until the run has finished (or press Stop), then pick tokens.")
                return gr.skip()
            if index not in editable_positions(view):
                gr.Info("Only written tokens of the answer can be picked (not the prompt, nor text after the end).")
                return gr.skip()
            session.selected ^= {index}
            out[ui.selection] = selection_text(view, session.selected)
        else:
            session.inspected = index
        out[ui.inspector] = inspector_html(view, step, session.inspected)
        out[ui.canvas] = canvas_html(
            view,
            step,
            detail=True,
            selected=session.selected,
            inspected=session.inspected,
            status="running" if view.status == "running" else None,
        )
        return out

    def clear_pick(session: Session):
        session.selected.clear()
        view = session.view
        out: dict = {ui.selection: "No tokens picked yet."}
        if view is not None and view.states and view.status != "running":
            out[ui.canvas] = canvas_html(view, session.shown_step, detail=True, inspected=session.inspected)
        return out

    @guarded
    def rewrite(session: Session, request: gr.Request, **settings: Any):
        """Re-mask the picked tokens and let the model re-write only those."""
        session.bind(request)
        values = read_settings(settings)
        view = session.view
        if view is None or not view.states:
            raise user_error("selection", "run the model first, then pick tokens to re-write")
        prompt, slots = edit_prompt(view, session.selected)
        values.update(prompt=prompt, gen_length=0, block_length=0)
        steps = values.get("steps") or slots
        values["steps"] = max(1, min(int(steps), slots))
        run = new_run(session, values, label=f"hand edit of {slots} token(s)", edit=view)
        # The edit shows up as a prompt with [MASK] placeholders; pick mode ends (chained `.then`).
        yield from stream(ui, session, run, extra={ui.prompt: prompt})

    def end_pick() -> tuple:
        return False, gr.update(visible=False)

    def play(session: Session):
        """Replay the shown run step by step (stop with Stop)."""
        view = session.view
        if view is None or not view.states:
            gr.Info("Nothing to play yet: press Generate first.")
            return
        if view.status == "running":
            gr.Info("The run is still going; press Stop or wait for it to finish.")
            return
        session.play_id += 1
        my_id = session.play_id
        interval = play_interval_ms(view.last_step) / 1000
        for frame in view.iter_frames():  # incremental: O(positions) per frame
            # Plain values only (the slider's range is already right): no component is rebuilt.
            message = (
                canvas_html(view, frame=frame, selected=session.selected, inspected=session.inspected),
                frame.step,
                stats_html(view, frame.step),
            )
            with session.lock:  # the check and the step shown change together with a new run's start
                superseded = session.play_id != my_id or session.view is not view
                if not superseded:
                    session.shown_step = frame.step
            if superseded:
                # Superseded (another run, Stop, a scrub): end on a message that changes nothing. gradio
                # repeats a stream's last message when it ends, and a frame of this run repeated after a
                # Re-write's final message put the slider and the heatmap's cursor back on this run's
                # frame while the canvas showed the new run (issue 13, item 9).
                yield gr.skip(), gr.skip(), gr.skip()
                return
            yield message
            time.sleep(interval)
        session.shown_step = None
        yield (
            canvas_html(view, detail=True, selected=session.selected, inspected=session.inspected),
            view.last_step,
            stats_html(view),
        )

    @guarded
    def upload(session: Session, path: str | None, request: gr.Request):
        """Replay a trajectory JSON file (no model needed)."""
        session.bind(request)
        if not path:
            return gr.skip()
        size = os.path.getsize(path)
        if size > MAX_UPLOAD_BYTES:
            raise user_error("file", f"the file is {size / 1e6:.1f} MB; the limit is {UPLOAD_LIMIT_TEXT}")
        with open(path, "rb") as handle:
            data = handle.read(MAX_UPLOAD_BYTES + 1)
        containers = data.count(b"[") + data.count(b"{")
        if containers > MAX_UPLOAD_CONTAINERS:
            raise user_error(
                "file", f"the file has {containers} JSON arrays and objects; the limit is {MAX_UPLOAD_CONTAINERS}"
            )
        trajectory = Trajectory.from_json(data)
        view = RunView.from_trajectory(trajectory, label=f"uploaded file {Path(path).name}")
        view.status = "replay"
        session.show_replay(view, trajectory)
        out = settle(ui, session, view)
        out[ui.final_text] = trajectory.final_text
        out[ui.prompt] = trajectory.prompt  # Generate re-runs it with the current settings
        out.update(write_exports(ui, session, trajectory, view))
        return out

    @guarded
    def model_changed(name: str, strategy: str):
        """Load a built-in model (instant); an autoregressive one switches the strategy to left to
        right. Hub models are only described here: they download (gigabytes) on the first Generate."""
        spec = registry.get_spec(checked_model_name(name))
        if not spec.builtin and spec.key not in registry.cached_models():
            size = f"about {spec.download_gb:g} GB" if spec.download_gb else "its weights"
            note = (
                f'<div class="dc-model">Model: <b>{html.escape(spec.display_name)}</b></div>'
                f'<div class="dc-warn">{html.escape(spec.description)} The first Generate downloads {size} '
                "and needs a machine with enough memory; the built-in model runs anywhere.</div>"
            )
            return note, gr.update(), gr.update(visible=True)
        model, note = get_model(name)
        autoregressive = model.kind == "autoregressive"
        return (
            model_note_html(model, note),
            gr.update(value="left_to_right") if autoregressive else gr.update(),
            gr.update(visible=not autoregressive),
        )

    def strategy_changed(strategy: str):
        spec = STRATEGIES.get(strategy)
        show_threshold = strategy == "threshold"
        show_factor = strategy == "factor"
        show_gamma = strategy == "entropy_bound"
        show_eps = strategy in DREAM_STRATEGIES
        show_order = bool(spec and spec.ranked)
        adaptive = bool(spec and not spec.exact_steps)
        steps_info = (
            "The most steps it may take: this strategy stops early once every token is written."
            if adaptive
            else "Denoising steps (model calls). Fewer steps = more tokens written per step."
        )
        return (
            gr.update(visible=not (spec and spec.one_per_step), info=steps_info),
            gr.update(visible=show_threshold),
            gr.update(visible=show_factor),
            gr.update(visible=show_gamma),
            gr.update(visible=show_eps),
            gr.update(visible=show_order),
            gr.update(visible=not (show_threshold or show_factor or show_gamma or show_eps or show_order)),
            gr.update(visible=bool(spec and spec.allows_remask)),
            gr.update(open=show_threshold or show_factor or show_gamma),  # its key setting in view (e.g. after an example)
        )

    def projector_changed(session: Session, on: bool):
        """Projector mode: the heatmap with projector-sized text; the settings panel closes."""
        session.projector = bool(on)
        view = session.view
        size = heatmap_size(session)
        if view is None or not view.states:
            figure = empty_heatmap_dict(**size)
        else:
            step = view.last_step if session.shown_step is None else view.clamp(session.shown_step)
            figure = heatmap_dict(view, cursor=step, revision=str(id(view)), **size)
        return plot(figure), gr.update(open=False) if on else gr.update()

    def remask_changed(mode: str):
        return gr.update(open=mode not in (None, "", "off"))

    def pick_toggled(session: Session, on: bool):
        view = session.view
        text = selection_text(view, session.selected) if view is not None and view.states else "No tokens picked yet."
        return gr.update(visible=bool(on)), text

    return {
        "generate": generate,
        "step": step,
        "resume": resume,
        "stop": stop,
        "exports": exports,
        "scrub": scrub,
        "token_clicked": token_clicked,
        "clear_pick": clear_pick,
        "rewrite": rewrite,
        "play": play,
        "upload": upload,
        "model_changed": model_changed,
        "strategy_changed": strategy_changed,
        "pick_toggled": pick_toggled,
        "remask_changed": remask_changed,
        "projector_changed": projector_changed,
        "end_pick": end_pick,
    }



def create_events(ui: CanvasUI, state: gr.State) -> None:
    """Connect the events of the Canvas tab.

    Concurrency: everything that runs the model (Generate, Step, Continue, Re-write) shares the
    concurrency group "inference" with limit 2: torch runs one thread per run (``configure_torch``),
    so two runs use a 2-core machine fully and a third waits in the queue instead of slowing
    everyone down. Cheap events (scrub, click, play, upload) get their own higher limits so they
    never wait behind a long run. Stop, and the click that supersedes a running Generate, are not
    queued at all: they must act immediately.
    """
    h = make_handlers(ui)
    # Every setting, by name, unprocessed: the handlers check each value against its widget themselves
    # (``read_input``), so a bad value gets a message naming the field and its range.
    settings = {"inputs_kwargs": {name: getattr(ui, name) for name in SETTINGS}, "preprocess": False}
    outputs = run_outputs(ui)
    inference = {"concurrency_limit": INFERENCE_CONCURRENCY, "concurrency_id": "inference"}

    play_event = ui.play.click(
        h["play"],
        [state],
        [ui.canvas, ui.scrub, ui.stats],
        api_name="play",
        show_progress="hidden",
        concurrency_limit=8,
    )
    # A Play in progress ends by itself when another run replaces its run (``play``'s loop checks the
    # session, then ends on an all-skip message). Cancelling it from here instead would end it inside its
    # sleep, where gradio repeats its last frame after the new run's final message (issue 13, item 9).

    # A second Generate while one runs (trigger_mode="multiple" lets the click through): the unqueued
    # `supersede` stops this tab's current run at once, even when the queue is busy; the new run then
    # starts, and the old stream ends at its next wake-up (it is no longer the session's run).
    ui.generate.click(supersede, [state], None, queue=False, show_progress="hidden", api_visibility="private")
    generate_event = ui.generate.click(
        h["generate"],
        [state],
        outputs,
        api_name="generate",
        trigger_mode="multiple",
        show_progress="hidden",
        **settings,
        **inference,
    )
    ui.step.click(h["step"], [state], outputs, api_name="step", show_progress="hidden", **settings, **inference)
    resume_event = ui.resume.click(
        h["resume"], [state], outputs, api_name="continue", show_progress="hidden", **inference
    )
    rewrite_event = ui.rewrite.click(
        h["rewrite"],
        [state],
        [*outputs, ui.prompt],
        api_name="rewrite",
        show_progress="hidden",
        **settings,
        **inference,
    )
    rewrite_event.then(h["end_pick"], None, [ui.pick, ui.pick_row], show_progress="hidden", api_visibility="private")
    ui.stop.click(
        h["stop"],
        [state],
        outputs,
        api_name="stop",
        queue=False,
        show_progress="hidden",
        cancels=[generate_event, resume_event, rewrite_event, play_event],
    ).then(h["exports"], [state], [ui.download_json, ui.download_html], show_progress="hidden", concurrency_limit=2)
    ui.scrub.input(
        h["scrub"],
        [state, ui.scrub],
        [ui.canvas, ui.stats, ui.inspector],
        api_name="scrub",
        trigger_mode="always_last",
        show_progress="hidden",
        concurrency_limit=8,
        preprocess=False,  # ``scrub`` checks the step against the shown run's range itself
    )
    ui.scrub.change(None, [ui.scrub], None, js=CURSOR_JS)  # heatmap cursor: browser only
    ui.canvas.token(
        h["token_clicked"],
        [state, ui.pick],
        [ui.inspector, ui.canvas, ui.selection],
        api_visibility="private",
        show_progress="hidden",
        concurrency_limit=8,
    )
    ui.clear_pick.click(
        h["clear_pick"], [state], [ui.selection, ui.canvas], show_progress="hidden", api_visibility="private"
    )
    ui.pick.change(
        h["pick_toggled"],
        [state, ui.pick],
        [ui.pick_row, ui.selection],
        queue=False,
        show_progress="hidden",
        api_visibility="private",
    )
    ui.projector.change(None, [ui.projector], None, js=PROJECTOR_JS)
    ui.projector.change(
        h["projector_changed"],
        [state, ui.projector],
        [ui.heatmap, ui.settings],
        queue=False,
        show_progress="hidden",
        api_visibility="private",
    )
    ui.upload.upload(h["upload"], [state, ui.upload], [*outputs, ui.prompt], api_name="replay", concurrency_limit=2)
    ui.model.change(
        h["model_changed"],
        [ui.model, ui.strategy],
        [ui.model_note, ui.strategy, ui.cfg_box],
        api_visibility="private",
        concurrency_limit=2,
    )
    ui.strategy.change(
        h["strategy_changed"],
        [ui.strategy],
        [
            ui.steps,
            ui.threshold,
            ui.factor,
            ui.gamma,
            ui.eps,
            ui.order_temperature,
            ui.no_strategy_settings,
            ui.remask_box,
            ui.strategy_box,
        ],
        queue=False,
        show_progress="hidden",
        api_visibility="private",
    )
    ui.remask.change(
        h["remask_changed"], [ui.remask], [ui.remask_box], queue=False, show_progress="hidden", api_visibility="private"
    )


def selection_text(view: RunView | None, selected: set[int]) -> str:
    if not selected or view is None:
        return "No tokens picked yet: click written tokens in the canvas."
    words = ", ".join(f"`{view.token_text(view.final.tokens[i]).strip() or '␣'}`" for i in sorted(selected)[:12])
    more = "…" if len(selected) > 12 else ""
    return f"{len(selected)} picked: {html.escape(words)}{more}"


