"""The Gradio app of Diffusion Canvas, one module per job (``app.py`` is the entry point Spaces runs).

    hosting     where the app runs (Hugging Face Spaces with ZeroGPU, or anywhere else)
    limits      every limit of the app (sizes, seconds, queue, memory) and torch's thread count
    errors      user-facing errors: each names the field (its label) and the allowed range
    settings    UI values -> ``SamplerConfig`` (the settings table lives beside the config's fields)
    models      the Model field -> a loaded adapter, and the note shown about it
    session     ``Run`` (one live denoising run) and ``Session`` (what one browser tab holds)
    streaming   sending a run to the page as it happens, and the canvas outputs of a run
    canvas_tab  the main tab: layout (``create_ui``) and its events (``create_events``)
    race_tab    AR twin vs diffusion, or strategies side by side
    how_tab     the explanation page

Imports go one way: hosting / limits / errors / settings / models -> session -> streaming -> tabs -> app.py.
Nothing here touches the model's internals: decoding is ``dlm_core.sampler``, drawing ``dlm_core.viz``.
"""

from pathlib import Path

ASSETS = Path(__file__).resolve().parents[1] / "assets"
