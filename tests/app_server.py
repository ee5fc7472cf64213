"""Start ``python app.py`` in a subprocess on a free loopback port and wait until it answers.

    with running_app(model="tiny-random") as url:
        ...

The app's output goes to a log file under ``test-artifacts/`` (shown in the error if it fails to
start). The process group is terminated on exit, so no server outlives the test.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # benchmarks/load_test.py imports this file with only tests/ on the path
    sys.path.insert(0, str(ROOT))

from ui.settings import START_VALUES  # noqa: E402 (after the path fix above)
from ui.streaming import RUN_OUTPUTS  # noqa: E402

ARTIFACTS = ROOT / "test-artifacts"
START_TIMEOUT = 120.0  # seconds; importing torch + gradio on a busy 2-core machine is slow


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/gradio_api/info", timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


@contextlib.contextmanager
def running_app(model: str = "tiny-random", name: str = "app", env: dict[str, str] | None = None) -> Iterator[str]:
    """Yield the base URL of a freshly started app (``DIFFUSION_CANVAS_MODEL=model``)."""
    environment = {
        **os.environ,
        "GRADIO_SERVER_NAME": "127.0.0.1",
        "GRADIO_SERVER_PORT": str(free_port()),
        "DIFFUSION_CANVAS_MODEL": model,
        "GRADIO_ANALYTICS_ENABLED": "False",
        "PYTHONUNBUFFERED": "1",
        **(env or {}),
    }
    environment.pop("PORT", None)
    with app_process(environment, name) as (url, _pid):
        yield url


@contextlib.contextmanager
def app_process(
    environment: dict[str, str], name: str, command: list[str] | None = None
) -> Iterator[tuple[str, int]]:
    """Start ``python app.py`` (or ``command``, a launcher that runs it) with exactly ``environment``
    (which names its GRADIO_SERVER_PORT) and yield (its loopback URL, its pid) once it answers; its
    whole process group is ended on exit."""
    ARTIFACTS.mkdir(exist_ok=True)
    url = f"http://127.0.0.1:{environment['GRADIO_SERVER_PORT']}"
    log_path = ARTIFACTS / f"{name}-server.log"
    with open(log_path, "w", encoding="utf-8") as log:
        process = subprocess.Popen(
            command or [sys.executable, str(ROOT / "app.py")],
            cwd=ROOT,
            env=environment,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            deadline = time.monotonic() + START_TIMEOUT
            while not _ready(url):
                if process.poll() is not None:
                    raise RuntimeError(f"app exited with {process.returncode}:\n{log_path.read_text()[-4000:]}")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"app did not answer within {START_TIMEOUT} s:\n{log_path.read_text()[-4000:]}")
                time.sleep(0.25)
            yield url, process.pid
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)


# -- the app's API settings --------------------------------------------------------------------------

# Every setting of /generate, /step and /rewrite: the app's starting values (from the settings table),
# with small, deterministic run settings (greedy, no top-p, no order randomness, one block): the one copy
# the API tests and benchmarks/load_test.py start from.
API_DEFAULTS = {
    **START_VALUES,
    "model": "tiny-random",
    "prompt": "ROMEO:\n",
    "gen_length": 32,
    "steps": 16,
    "block_length": 0,
    "temperature": 0.0,
    "top_p": 1.0,
    "order_temperature": 0.0,
}


# -- reading the app's run outputs (shared by the API, hardening and browser tests) -----------------

# A run event's outputs by name (the app's own list, ui.streaming.RUN_OUTPUTS): ``out[OUTPUT["canvas"]]``.
OUTPUT = {name: index for index, name in enumerate(RUN_OUTPUTS)}


def canvas_state(markup) -> tuple[int, str] | None:
    """(step shown, status) of a canvas HTML update, or None if ``markup`` is not a canvas."""
    if not isinstance(markup, str):
        return None
    match = re.search(r'class="dc-canvas" data-step="(\d+)" data-last="\d+" data-status="(\w+)"', markup)
    return (int(match.group(1)), match.group(2)) if match else None


def final_text(outputs: list) -> str:
    index = OUTPUT["final_text"]
    texts = [out[index] for out in outputs if isinstance(out[index], str) and out[index]]
    assert texts, "no final text arrived"
    return texts[-1]


def direct(prompt: str, **config) -> str:
    """The final text of the same run done directly with the engine (tiny-random model)."""
    import torch

    from dlm_core.models import registry
    from dlm_core.sampler import SamplerConfig
    from dlm_core.trajectory import record

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the app runs torch with one thread: same arithmetic, same argmax
    try:
        return record(registry.load_model("tiny-random"), prompt, SamplerConfig(**config)).final_text
    finally:
        torch.set_num_threads(threads)
