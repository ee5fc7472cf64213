"""The "How it works" tab: the explanation page (``assets/how_it_works.md``); no events."""

from __future__ import annotations

import gradio as gr

from . import ASSETS


def create_ui() -> None:
    gr.Markdown((ASSETS / "how_it_works.md").read_text(encoding="utf-8"), elem_id="dc-howto")
