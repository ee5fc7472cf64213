"""The app in a real browser: Debian's Chromium, headless, driven by Playwright (sync API).

Screenshots go to ``test-artifacts/``. Chromium is required: CI installs it (scripts/test.sh); if it
is missing the tests fail with a message saying so, they never skip.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from app_server import ARTIFACTS, direct, running_app
from playwright.sync_api import Page, expect, sync_playwright

from dlm_core.models import registry
from dlm_core.sampler import SamplerConfig
from dlm_core.trajectory import record
from ui.settings import DEFAULT_ORDER_TEMPERATURE

pytestmark = pytest.mark.slow  # a server and a real browser

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
HOSTILE = "<img src=x onerror=alert(1)>"
TIMEOUT = 60_000  # ms; a busy 2-core machine


@pytest.fixture(scope="module")
def url():
    with running_app(model="tiny-random", name="browser") as base:
        yield base


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        pytest.fail(
            f"Chromium is required for the browser tests but {CHROMIUM} does not exist; "
            "install it with `apt-get install -y chromium` (scripts/test.sh does)."
        )
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        # One context for every page: the browser cache is shared, so gradio's large plotly chunk
        # (4.6 MB) is fetched once per module rather than once per page.
        context = chromium.new_context()
        yield context
        context.close()
        chromium.close()


def open_page(browser, url: str, theme: str = "light", width: int = 1280, height: int = 900):
    page = browser.new_page()
    page.set_viewport_size({"width": width, "height": height})
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    page.on(
        "console",
        lambda message: print(f"[browser {message.type}] {message.text}") if message.type == "error" else None,
    )
    page.on("pageerror", lambda error: print(f"[browser page error] {error}"))
    page.on("requestfailed", lambda request: print(f"[browser request failed] {request.url} {request.failure}"))
    page.goto(f"{url}/?__theme={theme}")
    page.wait_for_selector("#dc-generate", timeout=TIMEOUT)
    return page, dialogs


def canvas(page: Page):
    return page.locator("#dc-canvas .dc-canvas")


def wait_status(page: Page, status: str) -> None:
    page.wait_for_selector(f'#dc-canvas .dc-canvas[data-status="{status}"]', timeout=TIMEOUT)


HEATMAP_STATE = """() => {
  const root = document.querySelector('#dc-heatmap');
  const div = root && root.querySelector('.js-plotly-plot');
  return {
    root: !!root, plotDiv: !!div, plotlyLoaded: !!window.Plotly,
    traces: div && div.data ? div.data.map(t => t.type + ':' + (t.z && t.z.shape ? t.z.shape : '')) : null,
    layers: root ? root.querySelectorAll('.heatmaplayer image').length : 0,
    width: div ? div.getBoundingClientRect().width : 0,
    text: root ? root.innerText.slice(0, 200) : '',
  };
}"""


def wait_heatmap(page: Page) -> None:
    """Wait until the heatmap is drawn; on failure say what the plot looked like."""
    try:
        page.wait_for_selector("#dc-heatmap .js-plotly-plot .heatmaplayer image", state="attached", timeout=TIMEOUT)
    except Exception as error:
        raise AssertionError(f"the heatmap was not drawn: {page.evaluate(HEATMAP_STATE)}") from error


def final_text(page: Page) -> str:
    return page.locator("#dc-final-text textarea").input_value()


def test_example_generate_scrub_inspect(browser, url):
    page, dialogs = open_page(browser, url)
    page.get_by_text("Continue a speech: ROMEO", exact=True).click()
    expect(page.locator("#dc-prompt textarea")).to_have_value("ROMEO:\n", timeout=TIMEOUT)
    # Time from the click to each streamed step, measured in the page (no polling delay).
    page.evaluate(
        """() => { window.__seen = {}; const root = document.querySelector('#dc-canvas');
        new MutationObserver(() => { const c = root.querySelector('.dc-canvas');
          if (c && c.dataset.status && !(c.dataset.step in window.__seen))
            window.__seen[c.dataset.step] = performance.now() - window.__clicked; })
          .observe(root, {subtree: true, childList: true, attributes: true});
        document.querySelector('#dc-generate').addEventListener('click',
          () => { window.__clicked = performance.now(); }, {capture: true}); }"""
    )
    page.click("#dc-generate")
    wait_status(page, "done")
    seen = page.evaluate("() => window.__seen")
    steps = sorted(int(k) for k in seen)
    # The all-mask canvas comes first, then model steps (a 32-step run of the tiny model may finish
    # between two frames: test_app_api checks that intermediate steps stream on a longer run).
    assert steps[0] == 0 and len(steps) >= 2, seen
    first_step = seen[str(steps[1])] / 1000
    print(f"on screen after the click: step 0 at {seen['0'] / 1000:.3f} s, step {steps[1]} at {first_step:.3f} s")
    assert first_step < 2.0  # 0.2-0.3 s measured on an idle machine; generous for busy CI
    wait_heatmap(page)
    expect(page.locator("#dc-final-text textarea")).not_to_have_value("", timeout=TIMEOUT)
    assert final_text(page) == direct("ROMEO:\n", gen_length=64, steps=32, temperature=1.0, top_p=0.95,
                                     order_temperature=DEFAULT_ORDER_TEMPERATURE)
    last = int(canvas(page).get_attribute("data-step"))
    assert last == 32
    # The final figure replaced the streamed ones: one row per state (steps 0..32).
    page.wait_for_function(
        "() => { const d = document.querySelector('#dc-heatmap .js-plotly-plot');"
        " return d && d.data && d.data[0].z && String(d.data[0].z.shape).replace(' ', '').startsWith('33,'); }",
        timeout=TIMEOUT,
    )
    assert canvas(page).locator(".t.m").count() == 0  # finished: no masks left

    # Scrub to step 1: the canvas shows masks again, the heatmap cursor follows.
    page.locator("#dc-scrub input[type=range]").fill("1")
    page.wait_for_selector('#dc-canvas .dc-canvas[data-step="1"]', timeout=TIMEOUT)
    masks = canvas(page).locator(".t.m").count()
    assert masks >= 60, masks
    assert canvas(page).locator(".t.n").count() >= 1  # what step 1 wrote, highlighted
    page.wait_for_function(
        "() => { const d = document.querySelector('#dc-heatmap .js-plotly-plot');"
        " return d && d.layout.shapes && d.layout.shapes[1].y0 === 1; }",
        timeout=TIMEOUT,
    )

    # What is the model thinking? Click a mask: the inspector lists its top guesses at step 1.
    canvas(page).locator(".t.m").nth(3).click()
    expect(page.locator("#dc-inspector")).to_contain_text("Top guesses", timeout=TIMEOUT)
    assert page.locator("#dc-inspector .dc-cand").count() == 5
    assert "top guesses" in canvas(page).locator(".t.m").nth(5).get_attribute("title")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "browser-light-desktop.png"), full_page=True)
    assert not dialogs
    page.close()


def test_hostile_prompt_renders_as_text(browser, url):
    page, dialogs = open_page(browser, url)
    page.locator("#dc-prompt textarea").fill(HOSTILE + "\n")
    page.click("#dc-generate")
    wait_status(page, "done")
    text = canvas(page).locator(".dc-text").inner_text()
    assert text.startswith(HOSTILE)
    assert page.locator("#dc-canvas img, #dc-inspector img, #dc-stats img").count() == 0
    canvas(page).locator(".t.p").first.click()  # the inspector shows the prompt token as text too
    expect(page.locator("#dc-inspector")).to_contain_text("prompt token", timeout=TIMEOUT)
    assert final_text(page).startswith(HOSTILE)
    time.sleep(0.5)
    assert dialogs == [], dialogs
    page.close()


def test_pick_tokens_and_rewrite_them(browser, url):
    page, _ = open_page(browser, url)
    page.locator("#dc-prompt textarea").fill("HAMLET:\n")
    page.click("#dc-generate")
    wait_status(page, "done")
    before = final_text(page)
    page.locator("#dc-pick input[type=checkbox]").check()
    page.wait_for_selector("#dc-rewrite", timeout=TIMEOUT)
    written = canvas(page).locator(".t:not(.p):not(.m)")
    written.nth(2).click()
    page.wait_for_selector("#dc-canvas .t.s", timeout=TIMEOUT)
    canvas(page).locator(".t:not(.p):not(.m)").nth(3).click()
    page.wait_for_function("() => document.querySelectorAll('#dc-canvas .t.s').length === 2", timeout=TIMEOUT)
    expect(page.locator("#dc-selection")).to_contain_text("2 picked", timeout=TIMEOUT)
    page.click("#dc-rewrite")
    expect(page.locator("#dc-prompt textarea")).to_have_value(re.compile(r"\[MASK:2\]"), timeout=TIMEOUT)
    page.wait_for_selector('#dc-canvas .dc-canvas[data-status="done"][data-last="2"]', timeout=TIMEOUT)
    after = final_text(page)
    assert len(after) == len(before)  # one character per token: only the two picked ones changed
    assert sum(a != b for a, b in zip(before, after, strict=True)) <= 2
    assert after.startswith("HAMLET:\n")
    page.close()


SLIDER_AND_CURSOR = """() => { const s = document.querySelector('#dc-scrub input[type=range]');
  const c = document.querySelector('#dc-canvas .dc-canvas'); const d = document.querySelector('#dc-heatmap .js-plotly-plot');
  return {slider: Number(s.value), max: Number(s.max), step: Number(c.dataset.step), last: Number(c.dataset.last),
          cursor: d.layout.shapes[1].y0}; }"""


def test_rewrite_during_play_keeps_slider_and_heatmap_in_step(browser, url):
    """Issue 13 item 9: Re-write pressed while Play was animating the previous run left the slider and
    the heatmap's cursor at an old frame (0 of 3) while the canvas showed the new run's last step (3 of 3)."""
    page, _ = open_page(browser, url)
    page.locator("#dc-prompt textarea").fill("HAMLET:\n")
    page.click("#dc-generate")
    wait_status(page, "done")
    page.locator("#dc-pick input[type=checkbox]").check()
    page.wait_for_selector("#dc-rewrite", timeout=TIMEOUT)
    for nth in (2, 4, 6):
        canvas(page).locator(".t:not(.p):not(.m)").nth(nth).click()
        page.wait_for_function(
            f"() => document.querySelectorAll('#dc-canvas .t.s').length === {(nth // 2)}", timeout=TIMEOUT
        )
    page.click("#dc-play")
    page.wait_for_function(  # playing: an early frame of the old run is shown
        "() => { const c = document.querySelector('#dc-canvas .dc-canvas');"
        " return c && Number(c.dataset.step) >= 1 && Number(c.dataset.step) < Number(c.dataset.last) - 4; }",
        timeout=TIMEOUT,
    )
    page.click("#dc-rewrite")
    page.wait_for_selector('#dc-canvas .dc-canvas[data-status="done"][data-last="3"]', timeout=TIMEOUT)
    time.sleep(2.0)  # the old Play's frames (one every 250 ms) would have arrived by now
    shown = page.evaluate(SLIDER_AND_CURSOR)
    assert shown["step"] == shown["last"] == 3, shown
    assert shown["slider"] == shown["max"] == 3, shown
    assert shown["cursor"] == 3, shown
    page.close()


BOX = """(selector) => { const e = document.querySelector(selector); if (!e) return null;
  const r = e.getBoundingClientRect(); return {top: r.top, bottom: r.bottom, left: r.left, right: r.right}; }"""


def run_first_example(page: Page) -> None:
    page.get_by_text("Continue a speech: ROMEO", exact=True).click()
    expect(page.locator("#dc-prompt textarea")).to_have_value("ROMEO:\n", timeout=TIMEOUT)
    page.click("#dc-generate")
    wait_status(page, "done")
    wait_heatmap(page)
    page.evaluate("() => window.scrollTo(0, 0)")
    time.sleep(0.5)


def test_one_screen_at_1440x900_shows_prompt_canvas_and_heatmap_together(browser, url):
    """Issue 13 item 1/10: after a run at 1440 x 900, without scrolling, the prompt, Generate, the
    canvas and the heatmap are all inside the viewport, and the settings panel covers none of them."""
    page, dialogs = open_page(browser, url, width=1440, height=900)
    run_first_example(page)
    boxes = {name: page.evaluate(BOX, selector) for name, selector in (
        ("prompt", "#dc-prompt"), ("generate", "#dc-generate"), ("canvas", "#dc-canvas .dc-canvas"),
        ("heatmap", "#dc-heatmap .js-plotly-plot"), ("settings", "#dc-settings"))}
    for name in ("prompt", "generate", "canvas", "heatmap"):
        box = boxes[name]
        assert box["top"] >= 0 and box["bottom"] <= 900 and box["left"] >= 0 and box["right"] <= 1440, (name, boxes)
        assert box["left"] >= boxes["settings"]["right"] - 1, (name, "under the settings panel", boxes)
    # The inspector opens beside the token clicked, inside the screen.
    canvas(page).locator(".t:not(.p)").nth(5).click()
    expect(page.locator("#dc-inspector")).to_contain_text("Position", timeout=TIMEOUT)
    panel = page.evaluate(BOX, "#dc-inspector")
    token = canvas(page).locator(".t:not(.p)").nth(5).bounding_box()
    assert panel["top"] >= 0 and panel["bottom"] <= 900, panel
    assert abs(panel["top"] - (token["y"] + token["height"])) < 40 or abs(panel["bottom"] - token["y"]) < 40, (panel, token)
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "layout-1440x900-after-run.png"))
    page.keyboard.press("Escape")
    assert not dialogs
    page.close()


def test_projector_mode_at_1280x720_has_no_inner_scrolling(browser, url):
    page, _ = open_page(browser, url, width=1280, height=720)
    run_first_example(page)
    page.locator("#dc-projector input[type=checkbox]").check()
    page.wait_for_function("() => document.querySelector('#dc-root').classList.contains('dc-projector')",
                           timeout=TIMEOUT)
    page.wait_for_function(  # the heatmap rebuilt with projector-sized text, the settings panel closed
        "() => { const t = document.querySelector('#dc-heatmap .xtick text');"
        " return t && parseFloat(t.style.fontSize) >= 18 && !document.querySelector('#dc-settings.open'); }",
        timeout=TIMEOUT,
    )
    page.evaluate("() => window.scrollTo(0, 0)")
    time.sleep(0.5)
    text = page.evaluate(
        "() => { const t = document.querySelector('#dc-canvas .dc-text');"
        " return {scroll: t.scrollHeight, client: t.clientHeight, font: parseFloat(getComputedStyle(t).fontSize),"
        " overflow: getComputedStyle(t).overflowY}; }"
    )
    assert text["scroll"] <= text["client"] + 1, f"the canvas scrolls inside its box in projector mode: {text}"
    assert text["font"] >= 20, text
    ticks = page.evaluate(
        "() => [...document.querySelectorAll('#dc-heatmap .xtick text, #dc-heatmap .ytick text')]"
        ".map(t => parseFloat(t.style.fontSize || getComputedStyle(t).fontSize))"
    )
    assert ticks and min(ticks) >= 18, ticks  # projector-sized heatmap text
    page.screenshot(path=str(ARTIFACTS / "layout-projector-1280x720.png"))
    page.close()


def test_projector_mode_at_1920x1080_fits_without_inner_scrolling(browser, url):
    """Issue 13 item 1/10: in projector mode on a 1920 x 1080 screen the canvas has no inner scrollbar,
    its text is projector-sized, and the heatmap (projector-sized text) is on the screen beside it."""
    page, _ = open_page(browser, url, width=1920, height=1080)
    run_first_example(page)
    page.locator("#dc-projector input[type=checkbox]").check()
    page.wait_for_function(
        "() => { const t = document.querySelector('#dc-heatmap .xtick text');"
        " return document.querySelector('#dc-root').classList.contains('dc-projector')"
        " && t && parseFloat(t.style.fontSize) >= 18 && !document.querySelector('#dc-settings.open'); }",
        timeout=TIMEOUT,
    )
    page.evaluate("() => window.scrollTo(0, 0)")
    time.sleep(0.8)  # plotly re-fits its width after the panel closed
    text = page.evaluate(
        "() => { const t = document.querySelector('#dc-canvas .dc-text');"
        " return {scroll: t.scrollHeight, client: t.clientHeight, font: parseFloat(getComputedStyle(t).fontSize)}; }"
    )
    assert text["scroll"] <= text["client"] + 1, f"the canvas scrolls inside its box in projector mode: {text}"
    assert text["font"] >= 24, text  # 1.75vw of 1920 px: screen-scaled projector text
    for name, selector in (("canvas", "#dc-canvas .dc-canvas"), ("heatmap", "#dc-heatmap .js-plotly-plot")):
        box = page.evaluate(BOX, selector)
        assert box["top"] >= 0 and box["bottom"] <= 1080 and box["left"] >= 0 and box["right"] <= 1920, (name, box)
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "layout-projector-1920x1080.png"))
    page.close()


def test_race_lanes_and_heatmaps_fit_1440x900_and_the_settings_panel_steps_aside(browser, url):
    """Issue 13 item 1/10: after a race at 1440 x 900, without scrolling, both lanes' canvases and
    heatmaps are inside the viewport (each canvas still shows several lines); the Canvas tab's
    settings panel leaves the Race tab its full width and is back when the Canvas tab is."""
    page, dialogs = open_page(browser, url, width=1440, height=900)
    # The panel slides open after the page loads (a 0.3 s transition): measure it once it is open.
    page.wait_for_function(f"() => ({BOX})('#dc-settings').right >= 250", timeout=TIMEOUT)
    settings_right = page.evaluate(BOX, "#dc-settings")["right"]
    page.get_by_role("tab", name="Race").click()
    page.wait_for_selector("#dc-race-go", state="visible", timeout=TIMEOUT)
    page.wait_for_selector("#dc-settings", state="detached", timeout=TIMEOUT)
    try:  # the page slides left (a 0.3 s transition) over the space the panel held
        page.wait_for_function(f"() => ({BOX})('#dc-race-go').left < {settings_right} - 100", timeout=5000)
    except Exception as error:
        raise AssertionError(f"the Race tab keeps the settings panel's space: {page.evaluate(BOX, '#dc-race-go')}") from error
    page.click("#dc-race-go")
    for lane in range(2):
        page.wait_for_selector(f"#dc-race-heat-{lane} .js-plotly-plot .heatmaplayer image", state="attached",
                               timeout=TIMEOUT)
    page.evaluate("() => window.scrollTo(0, 0)")
    time.sleep(0.8)
    boxes = {}
    for lane in range(2):
        boxes[f"canvas {lane}"] = page.evaluate(BOX, f"#dc-race-lane-{lane} .dc-canvas")
        boxes[f"heatmap {lane}"] = page.evaluate(BOX, f"#dc-race-heat-{lane} .js-plotly-plot")
    for name, box in boxes.items():
        assert box["top"] >= 0 and box["bottom"] <= 900 and box["left"] >= 0 and box["right"] <= 1440, (name, boxes)
    for lane in range(2):  # side by side, each canvas tall enough to read
        assert boxes[f"canvas {lane}"]["bottom"] - boxes[f"canvas {lane}"]["top"] >= 200, boxes
    assert boxes["canvas 1"]["left"] >= boxes["canvas 0"]["right"], boxes
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "layout-race-1440x900.png"))
    page.get_by_role("tab", name="Canvas").click()
    page.wait_for_selector("#dc-settings.open", timeout=TIMEOUT)
    assert page.evaluate(BOX, "#dc-prompt")["left"] >= page.evaluate(BOX, "#dc-settings")["right"] - 1
    assert not dialogs
    page.close()


CONTRAST = """(selector) => {
  const rgba = (text) => { const m = text.match(/rgba?\\(([^)]+)\\)/); if (!m) return null;
    const v = m[1].split(',').map(Number); return [v[0], v[1], v[2], v.length > 3 ? v[3] : 1]; };
  const lum = ([r, g, b]) => { const f = c => { c /= 255; return c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4; };
    return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b); };
  const background = (el) => { for (let e = el; e; e = e.parentElement) {
      if (e instanceof SVGElement) continue;
      const c = rgba(getComputedStyle(e).backgroundColor); if (c && c[3] > 0.5) return c; }
    return [255, 255, 255, 1]; };
  const out = [];
  for (const plot of document.querySelectorAll(selector)) {
    if (!plot.offsetParent) continue;
    for (const t of plot.querySelectorAll('.main-svg text')) {
      if (!t.textContent.trim() || t.closest('.hoverlayer')) continue;
      const fill = rgba(getComputedStyle(t).fill); if (!fill) continue;
      const bg = background(plot);
      const [a, b] = [lum(fill), lum(bg)];
      out.push({text: t.textContent.slice(0, 30), ratio: (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05),
                fill: getComputedStyle(t).fill, bg: bg.join(',')});
    }
  }
  return out;
}"""


def test_dark_mode_plot_text_meets_wcag_aa(browser, url):
    """Issue 13 item 4/10: every plot's text (titles, axes, ticks, legends, colour bars) in the dark
    theme has a contrast of at least 4.5:1 (WCAG AA) against the background it is drawn on."""
    page, _ = open_page(browser, url, theme="dark", width=1440, height=900)
    run_first_example(page)
    texts = page.evaluate(CONTRAST, "#dc-heatmap .js-plotly-plot")
    assert len(texts) >= 8, texts
    low = [t for t in texts if t["ratio"] < 4.5]
    assert not low, low
    page.screenshot(path=str(ARTIFACTS / "layout-dark-1440x900.png"))
    page.get_by_role("tab", name="Race").click()
    page.wait_for_selector(".dc-race-chart .js-plotly-plot .main-svg text", timeout=TIMEOUT)
    time.sleep(1.0)
    charts = page.evaluate(CONTRAST, ".dc-race-chart .js-plotly-plot")
    assert len(charts) >= 8, charts
    low = [t for t in charts if t["ratio"] < 4.5]
    assert not low, low
    page.close()


def test_phone_width_after_a_run(browser, url):
    page, _ = open_page(browser, url, width=390, height=844)
    assert page.evaluate("() => !document.querySelector('#dc-settings').classList.contains('open')")
    page.click("#dc-generate")
    wait_status(page, "done")
    overflow = page.evaluate("() => document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0, overflow
    page.screenshot(path=str(ARTIFACTS / "layout-phone-390.png"), full_page=True)
    page.close()


def test_replay_upload_projector_and_phone_dark(browser, url, tmp_path):
    trajectory = record(
        registry.load_model("tiny-random"), "MACBETH:\n", SamplerConfig(gen_length=24, steps=12, record_topk=True)
    )
    path = tmp_path / "run.json"
    path.write_text(trajectory.to_json(), encoding="utf-8")
    page, dialogs = open_page(browser, url, theme="dark", width=390, height=844)
    with page.expect_file_chooser() as chooser:
        page.click("#dc-upload")
    chooser.value.set_files(str(path))
    wait_status(page, "replay")
    assert final_text(page) == trajectory.final_text
    wait_heatmap(page)
    overflow = page.evaluate("() => document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0, f"the page is {overflow}px wider than a 390px phone screen"
    assert page.evaluate(
        "() => document.body.classList.contains('dark') || document.documentElement.classList.contains('dark') || !!document.querySelector('.dark')"
    )
    page.screenshot(path=str(ARTIFACTS / "browser-dark-phone.png"), full_page=True)

    # Play animates the run (the slider moves), projector mode makes the text big.
    page.click("#dc-play")
    page.wait_for_selector('#dc-canvas .dc-canvas[data-step="3"]', timeout=TIMEOUT)
    assert page.evaluate("() => !document.querySelector('#dc-settings').classList.contains('open')")
    page.locator("#dc-settings .toggle-button").click()  # projector mode lives in the settings panel
    page.locator("#dc-projector input[type=checkbox]").check()
    page.wait_for_function(
        "() => document.querySelector('#dc-root').classList.contains('dc-projector')", timeout=TIMEOUT
    )
    size = page.evaluate("() => parseFloat(getComputedStyle(document.querySelector('#dc-canvas .dc-text')).fontSize)")
    assert size >= 18, size  # projector text scales with the screen: its floor on a phone (1280 px: >= 20)
    wait_status(page, "replay")
    page.wait_for_selector(f'#dc-canvas .dc-canvas[data-step="{trajectory.num_steps}"]', timeout=TIMEOUT)
    page.set_viewport_size({"width": 1280, "height": 800})
    page.evaluate("() => window.scrollTo(0, 0)")
    time.sleep(0.5)
    page.screenshot(path=str(ARTIFACTS / "browser-dark-projector.png"), full_page=False)
    assert not dialogs
    page.close()


def test_standalone_export_plays_offline(browser, tmp_path):
    from dlm_core.viz import RunView, standalone_html

    trajectory = record(
        registry.load_model("tiny-random"),
        HOSTILE + "\n",
        SamplerConfig(gen_length=20, steps=10, record_topk=True, remask="cap", eta=0.3, temperature=0.8),
    )
    path = tmp_path / "replay.html"
    path.write_text(standalone_html(RunView.from_trajectory(trajectory)), encoding="utf-8")
    page = browser.new_page()
    page.set_viewport_size({"width": 1000, "height": 800})
    requests: list[str] = []
    errors: list[str] = []
    dialogs: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))

    def block(route):  # offline: anything but the file itself is refused (and recorded)
        if route.request.url.startswith("file:"):
            route.continue_()
        else:
            requests.append(route.request.url)
            route.abort()

    page.route("**/*", block)
    page.goto(path.as_uri())
    page.wait_for_selector("#heat .heatmaplayer", timeout=TIMEOUT)
    status = page.locator("#status")
    expect(status).to_contain_text(f"Step {trajectory.num_steps} of", timeout=TIMEOUT)
    assert page.locator("#canvas .t.m").count() == 0
    page.locator("#step").fill("1")
    expect(status).to_contain_text("Step 1 of", timeout=TIMEOUT)
    assert page.locator("#canvas .t.m").count() > 0
    page.locator("#canvas .t.m").first.click()
    expect(page.locator("#inspector")).to_contain_text("Position", timeout=TIMEOUT)
    assert page.locator("#inspector .dc-cand").count() == 5
    page.click("#play")
    expect(status).to_contain_text(f"Step {trajectory.num_steps} of", timeout=TIMEOUT)
    assert page.locator("#canvas").inner_text().startswith(HOSTILE)
    assert page.locator("#canvas img").count() == 0
    page.screenshot(path=str(ARTIFACTS / "export-offline.png"), full_page=True)
    assert not requests, requests
    assert not errors, errors
    assert not dialogs, dialogs
    page.close()
