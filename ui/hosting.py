"""Where the app runs: Hugging Face Spaces with ZeroGPU, or anywhere else. Hosting is the app's concern.

On a ZeroGPU Space a GPU is attached only while a function decorated with ``spaces.GPU`` runs, and its
memory cannot be queried outside such a call. ``detect()`` reads the Space's environment and returns
the ``Hosting`` that tells ``dlm_core.models.hub`` so: wrap each hub model's forward in ``spaces.GPU``
(one GPU attach per denoising step, the price of keeping the sampler free of Spaces code), default to
CUDA, keep the sampler's tensors on the CPU, assume the documented 40 GB. ``install()`` detects and
installs it; the app calls it once at start, before any model is loaded. Off Spaces both are no-ops.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Callable

from dlm_core.models.hub import Hosting, use_hosting

# ZeroGPU hands out a large slice of an A100/H200 per call; memory cannot be queried outside a
# ``spaces.GPU`` function, so assume the documented minimum (40 GB).
ZERO_GPU_MEMORY_BYTES = 40 * 1024**3
# Upper bound (seconds) ZeroGPU reserves per spaces.GPU call; one forward of an 8B model takes well under it.
ZERO_GPU_DURATION_S = 120


def _spaces_importable() -> bool:
    if "spaces" in sys.modules:
        return sys.modules["spaces"] is not None
    try:
        return importlib.util.find_spec("spaces") is not None
    except (ImportError, ValueError):
        return False


def _zero_gpu_flag() -> bool:
    return os.environ.get("SPACES_ZERO_GPU", "").lower() == "true"


def on_spaces_gpu() -> bool:
    """True on a Hugging Face Space with the ``spaces`` package (ZeroGPU's ``@spaces.GPU``) importable."""
    return (bool(os.environ.get("SPACE_ID")) or _zero_gpu_flag()) and _spaces_importable()


def on_zero_gpu() -> bool:
    return on_spaces_gpu() and _zero_gpu_flag()


def gpu_task(fn: Callable, duration: int = ZERO_GPU_DURATION_S) -> Callable:
    """``fn`` wrapped in ``spaces.GPU(duration=...)`` on Spaces; ``fn`` unchanged everywhere else."""
    if not on_spaces_gpu():
        return fn
    import spaces  # only on Spaces, where the package exists

    return spaces.GPU(duration=duration)(fn)


def detect() -> Hosting:
    """The ``Hosting`` for this machine: the plain default off Spaces."""
    if not on_spaces_gpu():
        return Hosting()
    zero = on_zero_gpu()
    return Hosting(
        wrap_forward=gpu_task, gpu_in_calls_only=zero, gpu_memory_bytes=ZERO_GPU_MEMORY_BYTES if zero else None
    )


def install() -> Hosting:
    """Detect the host and install its rules for every hub model loaded from now on."""
    hosting = detect()
    use_hosting(hosting)
    return hosting
