"""The live update-rate rule: what the app sends to the browser while the model runs.

The model produces a step every few milliseconds (tiny model) to a few tens of milliseconds (the
6M built-in model on one laptop core; ~77 ms at 256 positions); the browser must show the steps as
they happen without the UI becoming the bottleneck. Measured (``benchmarks/render_cost.py``, 256
positions x 256 steps): a live canvas is ~11 kB of HTML (no tooltips; ~25-50 kB with them) and
~1 ms to render; the heatmap grows to 256 x 256 float32 cells (~0.33 MB as base64) and takes
~1.5 ms to build; each message costs gradio a further ~4 ms of server time. So:

0. **The model never waits for the UI.** The app runs the sampler in a worker thread; the event
   handler renders whatever state is newest when it is ready for the next message.
1. **Canvas: every step**, except that steps arriving less than ``canvas_interval`` (1/30 s) after
   the previous canvas are folded into the next frame (more than 30 frames a second is not visible,
   and would only slow the model down). A folded frame highlights everything written since the
   previous frame, so no commit goes unseen; the step slider can show each step on its own.
2. **Heatmap: throttled.** Sent when ``max(heatmap_interval, bytes / heatmap_bytes_per_second)``
   seconds have passed since the last one (0.25 s, longer as it grows, keeping the heatmap under
   ~1 MB/s), with the rows so far and a fixed y range (rows fill in top-down, nothing rescales).
   Stats and the step slider's range ride along with it.
3. **Always at the start and at the end**: the first state (all masks) goes out at once, and the
   final canvas with top-5 tooltips, the full heatmap with markers, the final text and the
   downloads are built once, at the end (and on pause / stop / scrub).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

CANVAS_INTERVAL = 1 / 30
HEATMAP_INTERVAL = 0.25
HEATMAP_BYTES_PER_SECOND = 1.0e6


def heatmap_bytes(cells: int) -> int:
    """Approximate size of a streamed heatmap: float32 cells as base64 plus a fixed overhead."""
    return int(cells * 4 * 4 / 3) + 4000


@dataclass
class UpdatePolicy:
    """Decides, step by step, whether to send the canvas and / or the heatmap (see module docstring)."""

    canvas_interval: float = CANVAS_INTERVAL
    heatmap_interval: float = HEATMAP_INTERVAL
    heatmap_bytes_per_second: float = HEATMAP_BYTES_PER_SECOND
    clock: Callable[[], float] = time.monotonic
    _last_canvas: float = field(default=float("-inf"), init=False)
    _last_heatmap: float = field(default=float("-inf"), init=False)
    shown_step: int = field(default=-1, init=False)  # the step of the last canvas sent

    def decide(self, step: int, cells: int, final: bool = False) -> tuple[bool, bool]:
        """(send canvas, send heatmap) for ``step`` whose heatmap has ``cells`` cells; records what
        it says to send. ``final`` forces both."""
        now = self.clock()
        first = self._last_canvas == float("-inf")
        canvas = final or first or now - self._last_canvas >= self.canvas_interval
        wait = max(self.heatmap_interval, heatmap_bytes(cells) / self.heatmap_bytes_per_second)
        heatmap = final or first or now - self._last_heatmap >= wait
        if canvas:
            self._last_canvas = now
        if heatmap:
            self._last_heatmap = now
        return canvas, heatmap

    def until_next_canvas(self) -> float:
        """Seconds until another canvas may be sent (0 if one may go now)."""
        return max(0.0, self._last_canvas + self.canvas_interval - self.clock())

    def mark_shown(self, step: int) -> None:
        self.shown_step = step
