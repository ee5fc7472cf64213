"""The README's picture of the app, taken from the real app in headless Chromium.

    .venv/bin/python scripts/screenshot.py                    # -> assets/screenshot.png
    .venv/bin/python scripts/screenshot.py --url http://127.0.0.1:7860 --out /tmp/shot.png

Starts ``app.py`` on a free loopback port (``GRADIO_SERVER_PORT``; the built-in model unless
``DIFFUSION_CANVAS_MODEL`` says otherwise), or uses ``--url``; opens it at 1440x900 (``--width``,
``--height``) with Playwright and Debian's Chromium (``/usr/bin/chromium``, ``--chromium``), presses
Generate, waits for the run to finish, scrubs back to a step where part of the canvas is still masked
(``--step``, default: the middle; ``--step -1`` keeps the finished text), scrolls the live canvas to the
top (``--scroll-to``; ``none`` for the page's top) and saves the viewport
(``--full-page`` for the whole page) as a palette PNG (Pillow, ``--colors``), refusing to write one over
``--max-kb`` (500). Every selector is a flag with the current app's id as default, so a redesigned
layout needs at most new flags here, not a new script. Rerun it after UI changes and commit the image.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def running_app(timeout: float = 180) -> Iterator[str]:
    """``python app.py`` on a free port; its process group is ended on exit."""
    port = free_port()
    env = {**os.environ, "GRADIO_SERVER_NAME": "127.0.0.1", "GRADIO_SERVER_PORT": str(port)}
    env.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    url = f"http://127.0.0.1:{port}"
    log = open(ROOT / ".screenshot-server.log", "w", encoding="utf-8")  # noqa: SIM115 (closed below)
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "app.py")], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                raise SystemExit(f"app.py exited ({process.returncode}); see {log.name}")
            try:
                with urllib.request.urlopen(url + "/gradio_api/info", timeout=2):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise SystemExit(f"app.py did not answer within {timeout:g} s; see {log.name}") from None
                time.sleep(0.5)
        yield url
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
        log.close()
        Path(log.name).unlink(missing_ok=True)


def capture(url: str, args: argparse.Namespace) -> bytes:
    from playwright.sync_api import sync_playwright

    timeout = args.timeout * 1000
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=args.chromium, args=["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"]
        )
        page = browser.new_page(viewport={"width": args.width, "height": args.height}, device_scale_factor=1)
        page.goto(f"{url}/?__theme={args.theme}")
        page.wait_for_selector(args.generate, timeout=timeout)
        page.click(args.generate)
        page.wait_for_selector(args.done, timeout=timeout)
        if args.step != -1 and page.locator(args.scrub).count():
            slider = page.locator(args.scrub).first
            top = int(slider.get_attribute("max") or 0)
            step = top // 2 if args.step is None else min(args.step, top)
            slider.fill(str(step))
            page.wait_for_selector(args.shown_step.format(step=step), timeout=timeout)
        if args.scroll_to != "none" and page.locator(args.scroll_to).count():
            page.locator(args.scroll_to).first.evaluate("e => e.scrollIntoView({block: 'start'})")
            page.evaluate("window.scrollBy(0, -12)")
        else:
            page.evaluate("window.scrollTo(0, 0)")
        page.wait_for_timeout(1500)  # let the heatmap's redraw settle
        image = page.screenshot(full_page=args.full_page)
        browser.close()
    return image


def compress(png: bytes, colors: int) -> bytes:
    """A palette PNG: UI screenshots have few colours, so 256 keep it sharp at a fraction of the size."""
    from PIL import Image

    image = Image.open(io.BytesIO(png)).convert("RGB")
    quantized = image.quantize(colors=colors, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    out = io.BytesIO()
    quantized.save(out, format="PNG", optimize=True)
    return out.getvalue()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "assets" / "screenshot.png")
    parser.add_argument("--url", help="use this running app instead of starting app.py")
    parser.add_argument("--width", type=int, default=1440)
    parser.add_argument("--height", type=int, default=900)
    parser.add_argument("--theme", choices=("light", "dark"), default="light")
    parser.add_argument("--full-page", action="store_true")
    parser.add_argument("--step", type=int, default=None, help="step to show (default: the middle; -1: the end)")
    parser.add_argument("--colors", type=int, default=256)
    parser.add_argument("--max-kb", type=int, default=500)
    parser.add_argument("--timeout", type=float, default=300, help="seconds to wait for the page and the run")
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    parser.add_argument(
        "--scroll-to", default="#dc-canvas", help="selector put at the top of the picture ('none': the page's top)"
    )
    parser.add_argument("--generate", default="#dc-generate", help="selector of the Generate button")
    parser.add_argument("--done", default='#dc-canvas .dc-canvas[data-status="done"]', help="selector: run finished")
    parser.add_argument("--scrub", default="#dc-scrub input[type=range]", help="selector of the step slider")
    parser.add_argument(
        "--shown-step", default='#dc-canvas .dc-canvas[data-step="{step}"]', help="selector: that step is shown"
    )
    args = parser.parse_args(argv)
    if not Path(args.chromium).exists():
        print(f"error: no Chromium at {args.chromium} (Debian: apt-get install -y chromium)", file=sys.stderr)
        return 2
    with contextlib.nullcontext(args.url) if args.url else running_app() as url:
        raw = capture(url, args)
    png = compress(raw, args.colors)
    if len(png) > args.max_kb * 1024:
        print(f"error: {len(png) / 1024:.0f} KB is over --max-kb {args.max_kb}; try fewer --colors", file=sys.stderr)
        return 1
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_bytes(png)
    print(f"{args.out.relative_to(ROOT) if args.out.is_relative_to(ROOT) else args.out}: "
          f"{args.width}x{args.height}, {len(png) / 1024:.0f} KB (raw {len(raw) / 1024:.0f} KB)")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
