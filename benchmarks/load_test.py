"""Load test: N concurrent gradio_client sessions against the app, each result checked against the engine.

    python benchmarks/load_test.py                       # 30 clients x 3 requests, default model
    python benchmarks/load_test.py --clients 30 --requests 1 --short --model tiny-random
    python benchmarks/load_test.py --url http://127.0.0.1:7860 --clients 10

Without ``--url`` the app is started on a free loopback port (``tests/app_server.py``) with
``DIFFUSION_CANVAS_MODEL`` set to the model; with ``--url`` that server is used (loopback only: this
script never sends load anywhere else). Every client is its own gradio session, and every request
its own seed (temperature 0.8, so a mixed-up session or seed changes the text). All clients start
together (a barrier), each sends its requests one after another (``/generate``, streamed to the end).

Checks: every request succeeds, and its final text equals the same request run alone, computed by
calling the engine directly (``dlm_core``: same model, ``SamplerConfig`` and seed, torch with one
thread as in the app) after the load phase. Prints requests/s, generated tokens/s and the p50/p95
latency of a request (submit to last message, queueing included). Exit status 0 only if all passed.

Every wait is bounded: a request gets ``--timeout`` seconds, the whole load phase ``--deadline``.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from app_server import API_DEFAULTS, OUTPUT, running_app  # noqa: E402 (tests/ is not a package)

PROMPTS = ("ROMEO:\n", "JULIET:\n", "HAMLET:\nTo be, or not to be", "First Citizen:\n", "KING LEAR:\n")
# The API's settings as the tests send them, sampled at temperature 0.8; model, prompt, seed and
# lengths are set per request.
PER_REQUEST = ("model", "prompt", "seed", "gen_length", "steps")
SETTINGS = {k: v for k, v in API_DEFAULTS.items() if k not in PER_REQUEST} | {"temperature": 0.8}
SHORT = {"gen_length": 16, "steps": 8}
FULL = {"gen_length": 64, "steps": 32}


@dataclass
class Request:
    client: int
    index: int
    prompt: str
    seed: int
    latency: float = 0.0
    text: str | None = None
    error: str | None = None
    expected: str | None = None


@dataclass
class Report:
    model: str
    clients: int
    requests: list[Request] = field(default_factory=list)
    wall: float = 0.0
    tokens_per_request: int = 0

    @property
    def failures(self) -> list[str]:
        out = [f"client {r.client} request {r.index}: {r.error}" for r in self.requests if r.error]
        out += [
            f"client {r.client} request {r.index} (seed {r.seed}): got {r.text!r}, alone {r.expected!r}"
            for r in self.requests
            if not r.error and r.text != r.expected
        ]
        return out

    def summary(self) -> str:
        latencies = sorted(r.latency for r in self.requests if not r.error)
        done = len(latencies)
        p50 = statistics.median(latencies) if latencies else float("nan")
        p95 = latencies[min(done - 1, round(0.95 * (done - 1)))] if latencies else float("nan")
        tokens = done * self.tokens_per_request
        return "\n".join(
            [
                f"model {self.model} | {self.clients} clients | {len(self.requests)} requests | "
                f"{self.tokens_per_request} tokens each",
                f"succeeded {done} | errors {sum(1 for r in self.requests if r.error)} | "
                f"mismatches vs. alone {sum(1 for r in self.requests if not r.error and r.text != r.expected)}",
                f"wall {self.wall:.2f} s | throughput {done / self.wall:.2f} requests/s, {tokens / self.wall:.1f} tokens/s",
                f"latency p50 {p50:.2f} s | p95 {p95:.2f} s | max {max(latencies, default=float('nan')):.2f} s",
            ]
        )


def default_model() -> str:
    return "canvas-diffusion" if (ROOT / "assets" / "canvas-diffusion" / "config.json").is_file() else "tiny-random"


def check_loopback(url: str) -> None:
    host = urlparse(url).hostname
    if host not in ("127.0.0.1", "localhost", "::1"):
        raise SystemExit(f"error: --url: this load test only targets loopback servers, got host {host!r}")


def final_text(outputs: list) -> str | None:
    final = OUTPUT["final_text"]
    texts = [o[final] for o in outputs if isinstance(o, list | tuple) and isinstance(o[final], str)]
    texts = [t for t in texts if t]
    return texts[-1] if texts else None


def alone(model_name: str, requests: list[Request], lengths: dict) -> None:
    """The reference: each request run alone through the engine (one torch thread, as in the app)."""
    import torch

    from dlm_core.models import registry
    from dlm_core.sampler import SamplerConfig
    from dlm_core.trajectory import record

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        try:
            model = registry.load_model(model_name)
        except registry.ModelUnavailableError:  # as the app does: an untrained built-in -> the test model
            if not registry.get_spec(model_name).builtin:
                raise
            model = registry.load_model("tiny-random")
        for request in requests:
            config = SamplerConfig(**lengths, temperature=SETTINGS["temperature"], seed=request.seed, record_topk=True)
            request.expected = record(model, request.prompt, config).final_text
    finally:
        torch.set_num_threads(threads)


def load(url: str, model: str, clients: int, per_client: int, short: bool, timeout: float, deadline: float) -> Report:
    from gradio_client import Client

    lengths = SHORT if short else FULL
    report = Report(model=model, clients=clients, tokens_per_request=lengths["gen_length"])
    plan = [
        [Request(c, i, PROMPTS[(c + i) % len(PROMPTS)], seed=1000 * c + i + 1) for i in range(per_client)]
        for c in range(clients)
    ]
    report.requests = [r for row in plan for r in row]
    connected = [Client(url, download_files=False, verbose=False) for _ in range(clients)]
    barrier = threading.Barrier(clients + 1, timeout=timeout)
    stop_at = time.monotonic() + deadline

    def session(index: int) -> None:
        api = connected[index]
        with contextlib.suppress(threading.BrokenBarrierError):
            barrier.wait()
        for request in plan[index]:
            if time.monotonic() > stop_at:
                request.error = "not sent: the load phase deadline passed"
                continue
            started = time.monotonic()
            try:
                job = api.submit(
                    model=model,
                    prompt=request.prompt,
                    seed=request.seed,
                    **lengths,
                    **SETTINGS,
                    api_name="/generate",
                )
                job.result(timeout=min(timeout, max(1.0, stop_at - time.monotonic())))
                request.text = final_text(job.outputs())
                if request.text is None:
                    request.error = "no final text in the streamed outputs"
            except Exception as error:  # noqa: BLE001 (recorded and reported, never hidden)
                request.error = f"{type(error).__name__}: {str(error)[:300]}"
            request.latency = time.monotonic() - started

    threads = [threading.Thread(target=session, args=(i,), daemon=True) for i in range(clients)]
    for thread in threads:
        thread.start()
    barrier.wait()
    started = time.monotonic()
    for thread in threads:
        thread.join(timeout=max(0.0, stop_at - time.monotonic()) + timeout)
    report.wall = time.monotonic() - started
    for request in report.requests:
        if request.text is None and request.error is None:
            request.error = "still running when the load phase ended"
    for client in connected:
        with contextlib.suppress(Exception):
            client.close()
    alone(model, report.requests, lengths)
    return report


def run(
    url: str | None = None,
    model: str | None = None,
    clients: int = 30,
    requests: int = 3,
    short: bool = False,
    timeout: float = 120.0,
    deadline: float = 600.0,
) -> Report:
    """Start the app if no ``url`` is given, run the load, check every result. Returns the report."""
    model = model or default_model()
    if url is not None:
        check_loopback(url)
        return load(url, model, clients, requests, short, timeout, deadline)
    with running_app(model=model, name="load") as base:
        return load(base, model, clients, requests, short, timeout, deadline)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", help="a running app on loopback (default: start one)")
    parser.add_argument("--model", help=f"model key (default: {default_model()})")
    parser.add_argument("--clients", type=int, default=30, help="concurrent sessions (default 30)")
    parser.add_argument("--requests", type=int, default=3, help="requests per session (default 3)")
    parser.add_argument("--short", action="store_true", help=f"short requests {SHORT} instead of {FULL}")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds per request (default 120)")
    parser.add_argument("--deadline", type=float, default=600.0, help="seconds for the load phase (default 600)")
    args = parser.parse_args(argv)
    if not 1 <= args.clients <= 200 or not 1 <= args.requests <= 100:
        parser.error("--clients must be in [1, 200] and --requests in [1, 100]")
    if sys.path[0] != str(ROOT):
        sys.path.insert(0, str(ROOT))
    report = run(args.url, args.model, args.clients, args.requests, args.short, args.timeout, args.deadline)
    print(report.summary())
    failures = report.failures
    for line in failures[:20]:
        print("FAIL", line)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
