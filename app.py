"""Diffusion Canvas: watch a diffusion language model write. (The Gradio entry point Spaces runs.)

The app itself is the ``ui`` package, one module per job (see ``ui/__init__.py``); decoding lives in
``dlm_core.sampler``, rendering in ``dlm_core.viz``, models in ``dlm_core.models.registry``. This file
puts the three tabs on one page, sets up the queue and launches it.

Environment: ``GRADIO_SERVER_NAME`` (default 127.0.0.1), ``GRADIO_SERVER_PORT`` or ``PORT`` (default
7860), ``DIFFUSION_CANVAS_MODEL`` (default model key, e.g. ``tiny-random`` for tests),
``DIFFUSION_CANVAS_TORCH_THREADS`` and ``DIFFUSION_CANVAS_MAX_RUN_SECONDS`` (``ui/limits.py``).
"""

from __future__ import annotations

import os
from typing import Any

import gradio as gr

from dlm_core.viz.export import canvas_css
from ui import ASSETS, canvas_tab, hosting, how_tab, race_tab
from ui.limits import INFERENCE_CONCURRENCY, MAX_UPLOAD_BYTES, QUEUE_MAX_SIZE, configure_torch
from ui.session import close_session, close_tab, new_session


def on_unload(request: gr.Request) -> None:
    """The tab closed: stop its run now (gr.State itself is only deleted an hour later)."""
    close_tab(getattr(request, "session_hash", "") or "")


def settings_shown(shown: bool):
    """The event that shows (Canvas tab) or hides (Race, How it works) the settings panel: hidden, it
    leaves no empty column; shown again, it is open or closed as the user left it."""

    def update() -> dict[str, Any]:
        return gr.update(visible=shown)

    return update


def build_demo() -> gr.Blocks:
    """The app (importable without launching; HF Spaces runs ``python app.py``)."""
    hosting.install()  # Spaces / ZeroGPU rules for hub models, before any model is loaded
    configure_torch()
    with gr.Blocks(title="Diffusion Canvas", delete_cache=(3600, 7200)) as demo:
        state = gr.State(new_session, delete_callback=close_session)
        gr.Markdown(
            "# Diffusion Canvas\nWatch a diffusion language model write: it starts from a row of masks "
            "(blanks) and fills them in over a few steps, surest first.",
            elem_id="dc-title",
        )
        with gr.Tabs():
            with gr.Tab("Canvas", id="canvas") as canvas_page, gr.Column(elem_id="dc-root"):
                canvas = canvas_tab.create_ui()
            with gr.Tab("Race", id="race", elem_id="dc-race-tab") as race_page:
                race = race_tab.create_ui()
            with gr.Tab("How it works", id="how") as how_page:
                how_tab.create_ui()
        canvas_tab.create_events(canvas, state)
        race_tab.create_events(race)
        # The settings panel belongs to the Canvas tab: the other tabs take the full width.
        for page, shown in ((canvas_page, True), (race_page, False), (how_page, False)):
            page.select(settings_shown(shown), None, canvas.settings, queue=False, show_progress="hidden",
                        api_visibility="private")
        demo.unload(on_unload)
        demo.load(None, None, None, js=canvas_tab.NARROW_SCREEN_JS)
    # The queue: at most 64 waiting events (then "queue full" instead of unbounded waiting), and a
    # default of 2 concurrent runs per event for a 2-core CPU; see canvas_tab.create_events for the groups.
    demo.queue(max_size=QUEUE_MAX_SIZE, default_concurrency_limit=INFERENCE_CONCURRENCY)
    return demo


def launch_kwargs() -> dict[str, Any]:
    """Styling and limits for ``launch`` (gradio 6 takes css / theme / head there)."""
    return {
        "css": canvas_css() + "\n" + (ASSETS / "style.css").read_text(encoding="utf-8"),
        "theme": gr.themes.Soft(primary_hue="indigo"),
        "max_file_size": MAX_UPLOAD_BYTES,
        "show_error": True,
    }


demo = build_demo()

if __name__ == "__main__":
    port = os.environ.get("GRADIO_SERVER_PORT") or os.environ.get("PORT") or "7860"
    demo.launch(
        server_name=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
        server_port=int(port),
        **launch_kwargs(),
    )
