"""Per-step rendering cost of the live view: 256 positions x 256 steps.

    python benchmarks/render_cost.py [--positions 256] [--steps 256]

Records one run of the tiny random model (a real trajectory: commits spread over every step, top-5
candidates recorded), then replays it through exactly what the app does per step while streaming
(``RunView.add`` + ``canvas_html``, and the heatmap figure when ``UpdatePolicy`` says so) and what
it does once at the end (the hover-rich canvas, the final figure, the trajectory JSON and the
standalone HTML). Prints milliseconds and bytes; the model's own step time is printed for scale.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from dlm_core.models import tiny_random_model  # noqa: E402
from dlm_core.sampler import SamplerConfig, denoise  # noqa: E402
from dlm_core.trajectory import TrajectoryBuilder  # noqa: E402
from dlm_core.viz import RunView, UpdatePolicy, canvas_html, heatmap_dict, standalone_html, to_json  # noqa: E402


def ms(seconds: float) -> str:
    return f"{1000 * seconds:7.2f} ms"


def kb(size: int) -> str:
    return f"{size / 1024:8.1f} kB"


def summary(name: str, times: list[float], sizes: list[int]) -> None:
    p95 = sorted(times)[int(0.95 * (len(times) - 1))]
    print(
        f"{name:34s} mean {ms(statistics.mean(times))}  p95 {ms(p95)}  max {ms(max(times))}  "
        f"bytes mean {kb(int(statistics.mean(sizes)))}  max {kb(max(sizes))}"
    )


class _NumberCodec:
    """Token i reads "w<i> ": enough text to render; the timing is what matters here."""

    vocab_size = 4096

    def encode(self, text: str) -> list[int]:
        return [ord(ch) % 4000 for ch in text]

    def decode(self, ids: list[int]) -> str:
        return "".join(self.token_text(i) for i in ids)

    def token_text(self, token_id: int) -> str:
        return f"w{int(token_id)} "


def builtin_size_model():
    """A random-weight CanvasLM with the built-in models' configuration (same cost per step)."""
    from dlm_core.models import CanvasAdapter, CanvasConfig, CanvasLM

    torch.manual_seed(0)
    config = CanvasConfig(mask_token_id=4095, eos_token_id=4094)
    return CanvasAdapter(CanvasLM(config), _NumberCodec(), "random, built-in size", 4095, (4094,))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--positions", type=int, default=256, help="canvas length (prompt + generation)")
    parser.add_argument("--steps", type=int, default=256)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the app uses 1)")
    parser.add_argument(
        "--model",
        choices=("tiny", "builtin-size"),
        default="tiny",
        help="tiny random model, or a random-weight model of the built-in size (6 layers x 256, vocab 4096)",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    model = tiny_random_model(max_length=max(512, args.positions)) if args.model == "tiny" else builtin_size_model()
    prompt = "ROMEO:\n"
    gen_length = args.positions - len(model.encode(prompt))
    config = SamplerConfig(gen_length=gen_length, steps=min(args.steps, gen_length), record_topk=True)
    builder = TrajectoryBuilder(model, prompt, config)
    model_times, states = [], []
    clock = time.perf_counter()
    for state in denoise(model, prompt, config):
        now = time.perf_counter()
        model_times.append(now - clock)
        states.append(builder.add(state))
        clock = time.perf_counter()
    print(
        f"run: {len(states[0].tokens)} positions x {len(states) - 1} steps ({model.name}, {args.threads} torch thread)"
    )
    print(f"{'model step (for scale)':34s} mean {ms(statistics.mean(model_times[1:]))}")

    # What the stream does per step.
    view = RunView.for_model(model, prompt, config)
    add_t, canvas_t, canvas_b, detail_t, detail_b, heat_t, heat_b = [], [], [], [], [], [], []
    for state in states:
        t0 = time.perf_counter()
        view.add(state)
        t1 = time.perf_counter()
        html = canvas_html(view, status="running", titles=False)
        t2 = time.perf_counter()
        add_t.append(t1 - t0)
        canvas_t.append(t2 - t1)
        canvas_b.append(len(html.encode()))
        t3 = time.perf_counter()
        html = canvas_html(view, detail=True)
        detail_t.append(time.perf_counter() - t3)
        detail_b.append(len(html.encode()))
        t4 = time.perf_counter()
        figure = to_json(heatmap_dict(view))
        heat_t.append(time.perf_counter() - t4)
        heat_b.append(len(figure.encode()))
    print()
    print("per step, while streaming (canvas every step; heatmap when the policy allows):")
    summary("RunView.add", add_t, [0])
    summary("canvas_html (live, no tooltips)", canvas_t, canvas_b)
    summary("heatmap figure (rows so far)", heat_t, heat_b)
    print("per step, when paused / scrubbed (tooltips with top-5 guesses):")
    summary("canvas_html(detail=True)", detail_t, detail_b)

    # The update-rate rule over the run, at the model's measured pace and at a 5 ms/step pace.
    paces = (
        ("measured model pace", statistics.mean(model_times[1:])),
        ("5 ms per step", 0.005),
        ("40 ms per step", 0.04),
    )
    for pace_name, pace in paces:
        now = [0.0]
        policy = UpdatePolicy(clock=lambda now=now: now[0])
        canvases = heatmaps = sent = 0
        for step, _state in enumerate(states):
            now[0] = step * pace
            final = step == len(states) - 1
            send_canvas, send_heat = policy.decide(step, (step + 1) * view.width, final=final)
            canvases += send_canvas
            heatmaps += send_heat
            sent += canvas_b[step] * send_canvas + heat_b[step] * send_heat
        duration = max(pace * (len(states) - 1), 1e-9)
        print(
            f"policy at {pace_name:20s}: {canvases} canvas + {heatmaps} heatmap updates for {len(states)} states, "
            f"{sent / 1e6:.2f} MB in {duration:.2f} s ({sent / 1e6 / duration:.2f} MB/s)"
        )

    # Once, at the end.
    print()
    print("once, at the end of a run:")
    t0 = time.perf_counter()
    final_figure = to_json(heatmap_dict(view, cursor=view.last_step))
    print(f"{'final heatmap figure':34s} {ms(time.perf_counter() - t0)}  {kb(len(final_figure.encode()))}")
    t0 = time.perf_counter()
    trajectory = builder.build()
    text = trajectory.to_json()
    print(f"{'trajectory JSON (with top-5)':34s} {ms(time.perf_counter() - t0)}  {kb(len(text.encode()))}")
    t0 = time.perf_counter()
    page = standalone_html(view)
    print(f"{'standalone HTML (plotly.js inline)':34s} {ms(time.perf_counter() - t0)}  {kb(len(page.encode()))}")
    try:
        import plotly.graph_objects as go

        t0 = time.perf_counter()
        reference = go.Figure(go.Heatmap(z=view.heat())).to_json()
        print(
            f"{'(for comparison: go.Figure.to_json)':34s} {ms(time.perf_counter() - t0)}  {kb(len(reference.encode()))}"
        )
    except ImportError:
        pass


if __name__ == "__main__":
    main()
