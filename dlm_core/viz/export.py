"""A standalone, offline HTML file that replays a run: canvas + heatmap + step slider + play button.

Everything is inline (plotly.js from the installed ``plotly`` package, the CSS, the data and a
small player script), so the file opens from a USB stick in a classroom without a network. The
canvas frames are rendered here, in Python, by the same ``span_html`` as the app and stored as a
first frame plus per-step changes (a position's span only changes when it is written, stops being
"new" or is re-masked, so the whole run costs O(positions + steps) spans, not positions x steps).
The top candidates per step and position (when recorded) go in as compact arrays; the player shows
them in an inspector built with ``textContent`` (no HTML from data is ever parsed there).

All data is embedded as ``<script type="application/json">`` with ``<``, ``>`` and ``&`` written as
``\\u003c`` / ``\\u003e`` / ``\\u0026``, so no text can close the script element.
"""

from __future__ import annotations

import html
import json
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from .canvas import canvas_html, legend_html, span_html, stats_html, status_line, visible
from .heatmap import heatmap_dict
from .view import RunView

CSS_PATH = Path(__file__).with_name("canvas.css")
MAX_TOPK_CELLS = 512 * 512  # scored cells beyond which the export leaves the top candidates out


@lru_cache(maxsize=1)
def plotly_js() -> str:
    """The plotly.js bundle shipped with the plotly package (read once)."""
    from plotly.offline import get_plotlyjs

    return get_plotlyjs()


@lru_cache(maxsize=1)
def canvas_css() -> str:
    return CSS_PATH.read_text(encoding="utf-8")


def _safe_json(data: Any) -> str:
    text = json.dumps(data, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def frames(view: RunView) -> tuple[list[str], list[list[tuple[int, str]]], list[str]]:
    """(spans of step 0, per-step changed spans [(position, span)], status line per step)."""
    frames_iter = view.iter_frames()
    first = next(frames_iter)
    current = [span_html(view, first, i) for i in range(view.length)]
    spans0 = list(current)
    deltas: list[list[tuple[int, str]]] = []
    statuses = [status_line(view, first)]
    for step, frame in enumerate(frames_iter, start=1):
        previous = view.states[step - 1]
        state = view.states[step]
        # Spans that can differ from the previous step: this and the previous step's commits and
        # re-masks, and everything whose "after the end of text" status moved.
        candidates = set(np.asarray(state.committed).tolist()) | set(np.asarray(state.remasked).tolist())
        candidates |= set(np.asarray(previous.committed).tolist()) | set(np.asarray(previous.remasked).tolist())
        a, b = sorted((int(previous.answer_end), int(state.answer_end)))
        candidates |= set(range(a, min(b + 1, view.length)))
        delta = []
        for position in sorted(candidates):
            span = span_html(view, frame, position)
            if span != current[position]:
                current[position] = span
                delta.append((position, span))
        deltas.append(delta)
        statuses.append(status_line(view, frame))
    return spans0, deltas, statuses


def topk_data(view: RunView) -> tuple[list[Any], dict[str, str]] | None:
    """Per step: [positions, ids (5 per position, flat), probabilities in per mille], plus the texts."""
    if not view.states or view.states[-1].topk_ids is None:
        return None
    cells = sum(int((s.topk_ids[:, 0] >= 0).sum()) for s in view.states)
    if cells > MAX_TOPK_CELLS:
        return None
    steps: list[Any] = []
    used: set[int] = set()
    for state in view.states:
        positions = np.flatnonzero(state.topk_ids[:, 0] >= 0)
        ids = state.topk_ids[positions]
        probs = np.nan_to_num(state.topk_probs[positions], nan=0.0)
        used.update(int(i) for i in np.unique(ids) if i >= 0)
        steps.append(
            [positions.tolist(), ids.reshape(-1).tolist(), np.rint(probs * 1000).astype(int).reshape(-1).tolist()]
        )
    texts = {str(i): visible(view.token_text(i)) for i in sorted(used)}
    return steps, texts


PAGE_CSS = """
:root { color-scheme: light dark; --body-text-color: #1f2937; --body-text-color-subdued: #6b7280;
  --border-color-primary: #d1d5db; --background-fill-primary: #ffffff; --background-fill-secondary: #f3f4f6; }
@media (prefers-color-scheme: dark) {
  :root { --body-text-color: #e5e7eb; --body-text-color-subdued: #9ca3af; --border-color-primary: #374151;
    --background-fill-primary: #111827; --background-fill-secondary: #1f2937; }
  #heat .main-svg text { fill: #e5e7eb !important; }
}
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0 auto; padding: 1rem; max-width: 1100px;
  background: var(--background-fill-secondary); color: var(--body-text-color); }
h1 { font-size: 1.3rem; margin: 0 0 0.3rem; }
.meta { color: var(--body-text-color-subdued); font-size: 0.9rem; margin-bottom: 0.8rem; overflow-wrap: anywhere; }
.row { display: flex; gap: 1rem; flex-wrap: wrap; align-items: flex-start; }
.row > * { flex: 1 1 320px; min-width: 0; }
.player { display: flex; gap: 0.6rem; align-items: center; margin: 0.6rem 0; flex-wrap: wrap; }
.player input[type=range] { flex: 1 1 200px; }
.player button { font-size: 1rem; padding: 0.3rem 0.9rem; border-radius: 6px; border: 1px solid var(--border-color-primary);
  background: var(--background-fill-primary); color: var(--body-text-color); cursor: pointer; }
.panel { background: var(--background-fill-primary); border: 1px solid var(--border-color-primary); border-radius: 8px; padding: 0.6rem; }
#heat { min-height: 380px; }
footer { color: var(--body-text-color-subdued); font-size: 0.8rem; margin-top: 1rem; }
"""

PLAYER_JS = r"""
(function () {
  const D = JSON.parse(document.getElementById('dc-data').textContent);
  const F = JSON.parse(document.getElementById('dc-figure').textContent);
  const canvas = document.getElementById('canvas');
  const status = document.getElementById('status');
  const slider = document.getElementById('step');
  const label = document.getElementById('steplabel');
  const play = document.getElementById('play');
  const inspector = document.getElementById('inspector');
  const heat = document.getElementById('heat');
  let cur = D.spans0.slice(), at = 0, timer = null, picked = null;
  window.Plotly.newPlot(heat, F.data, F.layout, F.config);
  function inspect() {
    inspector.textContent = '';
    if (picked === null) { inspector.textContent = 'Click a token or mask to see the model\'s top guesses for it at this step.'; return; }
    const head = document.createElement('div');
    head.className = 'dc-head';
    head.textContent = 'Position ' + picked + ' at step ' + at + ':';
    inspector.appendChild(head);
    const T = D.topk && D.topk[at];
    const k = T ? T[0].indexOf(picked) : -1;
    if (k < 0) {
      const p = document.createElement('div');
      p.className = 'dc-when';
      p.textContent = D.topk ? 'The model did not score this position at this step.' : 'This file has no top candidates.';
      inspector.appendChild(p);
      return;
    }
    const list = document.createElement('ol');
    for (let j = 0; j < 5; j++) {
      const id = T[1][5 * k + j];
      if (id < 0) continue;
      const pm = T[2][5 * k + j];
      const li = document.createElement('li'); li.className = 'dc-cand';
      const code = document.createElement('code'); code.textContent = D.texts[String(id)] || ('#' + id);
      const bar = document.createElement('span'); bar.className = 'dc-bar'; bar.style.width = Math.max(1, Math.round(pm / 10)) + '%';
      const pct = document.createElement('span'); pct.className = 'dc-p'; pct.textContent = Math.round(pm / 10) + '%';
      li.append(code, bar, pct); list.appendChild(li);
    }
    inspector.appendChild(list);
  }
  function show(k) {
    k = Math.max(0, Math.min(D.last, k | 0));
    if (k < at) { cur = D.spans0.slice(); at = 0; }
    while (at < k) { at += 1; for (const [i, h] of D.deltas[at - 1]) cur[i] = h; }
    canvas.innerHTML = cur.join('');
    status.textContent = D.status[k];
    slider.value = String(k);
    label.textContent = 'step ' + k + ' / ' + D.last;
    const r = heat.layout && heat.layout.yaxis && heat.layout.yaxis.range ? heat.layout.yaxis.range : [k + 0.5, 0];
    const bottom = k < D.last ? Math.max(r[0], r[1], k + 0.5) : k + 0.5;
    window.Plotly.relayout(heat, {'shapes[0].y0': k + 0.5, 'shapes[0].y1': bottom, 'shapes[1].y0': k, 'shapes[1].y1': k});
    inspect();
  }
  function stop() { if (timer) { clearInterval(timer); timer = null; play.textContent = '\u25B6 Play'; } }
  play.addEventListener('click', () => {
    if (timer) { stop(); return; }
    if (at >= D.last) show(0);
    play.textContent = 'Pause';
    timer = setInterval(() => { if (at >= D.last) { stop(); return; } show(at + 1); }, D.interval);
  });
  slider.addEventListener('input', () => { stop(); show(Number(slider.value)); });
  canvas.addEventListener('click', (ev) => {
    const el = ev.target.closest('[data-i]');
    if (!el) return;
    picked = Number(el.dataset.i);
    inspect();
  });
  show(D.last);
})();
"""


def play_interval_ms(steps: int) -> int:
    """Frame interval of the play button: about 8 s for a whole run, between 30 and 500 ms a step."""
    return int(min(500, max(30, 8000 / max(1, steps))))


def standalone_html(view: RunView, title: str = "Diffusion Canvas") -> str:
    """The complete HTML document (a few MB: plotly.js is ~4.8 MB of it)."""
    spans0, deltas, statuses = frames(view)
    topk = topk_data(view)
    data = {
        "spans0": spans0,
        "deltas": deltas,
        "status": statuses,
        "last": view.last_step,
        "interval": play_interval_ms(view.last_step),
        "topk": topk[0] if topk else None,
        "texts": topk[1] if topk else {},
    }
    figure = heatmap_dict(view, cursor=view.last_step)
    config = view.meta.config
    prompt = view.meta.prompt
    meta = (
        f"Model <b>{html.escape(view.meta.model)}</b> ({html.escape(view.meta.model_kind)}) · strategy "
        f"<b>{html.escape(str(config.get('strategy', '')))}</b> · prompt <code>{html.escape(prompt)}</code>"
    )
    short = prompt if len(prompt) <= 40 else prompt[:39] + "…"
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)} · {html.escape(short)}</title>"
        f"<style>{canvas_css()}\n{PAGE_CSS}</style>"
        f"<script>{plotly_js()}</script></head><body>"
        f'<h1>{html.escape(title)}</h1><div class="meta">{meta}</div>'
        f"{legend_html()}"
        '<div class="player"><button id="play" type="button">\u25b6 Play</button>'
        f'<input id="step" type="range" min="0" max="{view.last_step}" value="{view.last_step}" aria-label="step">'
        '<span id="steplabel"></span></div>'
        '<div class="dc-canvas"><div class="dc-status" id="status"></div><div class="dc-text" id="canvas"></div></div>'
        '<div class="row"><div id="heat" class="panel"></div>'
        f'<div><div id="inspector" class="panel dc-inspect"></div><div class="panel" style="margin-top:0.6rem">{stats_html(view)}</div></div></div>'
        "<footer>Made with Diffusion Canvas. Colours: how sure the model was when it wrote each token. "
        "Grey boxes are masks. This file works offline.</footer>"
        f'<script type="application/json" id="dc-data">{_safe_json(data)}</script>'
        f'<script type="application/json" id="dc-figure">{_safe_json(figure)}</script>'
        f"<script>{PLAYER_JS}</script>"
        f"<noscript>{canvas_html(view)}</noscript>"
        "</body></html>\n"
    )
