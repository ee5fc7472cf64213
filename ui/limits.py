"""Every limit of the app in one place (README "Limits" describes them), and torch's thread count.

Environment: ``DIFFUSION_CANVAS_MAX_RUN_SECONDS`` (seconds of model work per run, default 60),
``DIFFUSION_CANVAS_TORCH_THREADS`` (torch intra-op threads, default 1: see ``configure_torch``).
"""

from __future__ import annotations

import logging
import math
import os

from dlm_core.sampler.config import SETTINGS

log = logging.getLogger("diffusion_canvas")

THREADS_ENV = "DIFFUSION_CANVAS_TORCH_THREADS"
RUN_SECONDS_ENV = "DIFFUSION_CANVAS_MAX_RUN_SECONDS"

def _env_seconds(name: str, default: float) -> float:
    try:
        value = float(os.environ.get(name, "") or default)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        log.warning("%s=%r is not a positive number of seconds; using %g", name, os.environ.get(name), default)
        return default
    return value


# Per request. The UI ranges (the sampler allows more; the canvas and heatmap stay readable here); a
# value outside them, from the UI or the API, is refused with the field's label and range. The prompt
# is capped in characters before it is tokenized; the model's max_length (tokens) is checked after.
MAX_GEN_LENGTH = SETTINGS["gen_length"].widget.high  # the widgets' ranges: dlm_core.sampler.config's table
MAX_STEPS = SETTINGS["steps"].widget.high
MAX_PROMPT_CHARS = 20_000
# Per run: seconds of model work per streamed run (Generate, Continue, Re-write). A run that reaches it
# stops as if Stop was pressed, with a note saying why (env DIFFUSION_CANVAS_MAX_RUN_SECONDS overrides).
MAX_RUN_SECONDS = _env_seconds(RUN_SECONDS_ENV, 60.0)
# Uploads (trajectory JSON): gradio refuses bigger files (HTTP 413, ``launch(max_file_size=...)``); the
# handler re-checks the size, caps the number of JSON arrays/objects (a 20 MB file of "[]," would
# otherwise parse into ~0.5 GB of Python lists; a real 20 MB trajectory has < 1M) and parses with
# ``json.loads`` only (nothing is ever unpickled or executed; the file name is never used as a path).
MAX_UPLOAD_BYTES = 20 * 1024 * 1024
UPLOAD_LIMIT_TEXT = "20 MB"
MAX_UPLOAD_CONTAINERS = 1_000_000
# Server: at most QUEUE_MAX_SIZE events wait in the queue (then "queue is full" at once, never an
# unbounded wait); INFERENCE_CONCURRENCY runs use the CPU at the same time (torch: 1 thread each).
QUEUE_MAX_SIZE = 64
INFERENCE_CONCURRENCY = 2
# Memory. A run keeps every step (tokens, probabilities, the top-5 guesses of every position: all steps
# are kept, ~200 bytes per step and position, so the largest run, 640 positions x 513 states, is ~65 MB).
# Sessions holding a run or replay are kept least-recently-started first; beyond KEPT_RUNS_MAX of them
# or KEPT_RUNS_BYTES in all, the oldest idle ones are released (a released tab just generates again).
# A closed tab releases its run at once (gradio would otherwise keep its state for an hour).
BYTES_PER_STEP_POSITION = 200
KEPT_RUNS_MAX = 200
KEPT_RUNS_BYTES = 1024**3


def configure_torch() -> None:
    """One intra-op thread per run by default: on a 2-core machine that is already busy (or
    serving two runs) torch's thread pool spin-waits and a tiny model's step gets ~10x slower;
    with one thread each, two concurrent runs (the queue's limit) use the two cores."""
    import torch

    threads = os.environ.get(THREADS_ENV, "1")
    try:
        torch.set_num_threads(max(1, int(threads)))
    except ValueError:
        log.warning("%s=%r is not an integer; keeping torch's default", THREADS_ENV, threads)

