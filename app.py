"""Diffusion Canvas: watch a diffusion language model write. (Gradio entry point; wiring only.)"""

import os

import gradio as gr

from dlm_core.models import tiny_random_model


def build_demo() -> gr.Blocks:
    model = tiny_random_model()
    with gr.Blocks(title="Diffusion Canvas") as demo:
        gr.Markdown(f"# Diffusion Canvas\nModel: **{model.name}**. The full app is under construction.")
    return demo


if __name__ == "__main__":
    build_demo().launch(
        server_name=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
        server_port=int(os.environ.get("GRADIO_SERVER_PORT", os.environ.get("PORT", "7860"))),
    )
