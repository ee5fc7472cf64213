"""Diffusion Canvas: watch a diffusion language model write. (Gradio entry point; wiring only.)

Rendering lives in ``dlm_core.viz`` (canvas HTML, heatmap figure, standalone export, the live
update-rate rule in ``dlm_core.viz.stream``); decoding in ``dlm_core.sampler``; models in
``dlm_core.models.registry``. This file turns UI values into a ``SamplerConfig``, drives
``denoise`` step by step for one browser session, and routes the results to components.

Per-session state: a ``Session`` object in ``gr.State`` holds the session's current ``Run`` (the
live ``denoise`` generator, its ``TrajectoryBuilder`` and ``RunView``) and what the canvas shows.
While streaming, a worker thread runs the model and the event handler sends the newest state by
the rule in ``dlm_core.viz.stream``. Starting a run supersedes the session's previous one (its
worker stops before its next step, so two runs never write to the same page); Stop cancels the
streaming event *and* flags the run, so the sampler stops consuming CPU within one step; closing
the tab does the same (``demo.unload``).

Environment: ``GRADIO_SERVER_NAME`` (default 127.0.0.1), ``GRADIO_SERVER_PORT`` or ``PORT``
(default 7860), ``DIFFUSION_CANVAS_MODEL`` (default model key, e.g. ``tiny-random`` for tests),
``DIFFUSION_CANVAS_TORCH_THREADS`` (torch intra-op threads, default 1: see ``configure_torch``).
"""

from __future__ import annotations

import html
import json
import logging
import math
import os
import re
import shutil
import tempfile
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gradio as gr
from gradio.components.plot import PlotData

from dlm_core.models import registry
from dlm_core.models.builtin import BUILTIN_ORDER_TEMPERATURE
from dlm_core.race import Lane, LaneState, race
from dlm_core.sampler import (
    STRATEGIES,
    ConfigError,
    EncodedPrompt,
    PromptError,
    SamplerConfig,
    canvas_prompt,
    denoise,
    parse_prompt,
    prompt_text,
)
from dlm_core.sampler.config import MAX_SEED
from dlm_core.trajectory import Trajectory, TrajectoryBuilder, TrajectoryError
from dlm_core.viz import (
    CURSOR_JS,
    EditError,
    RunView,
    UpdatePolicy,
    canvas_html,
    edit_canvas,
    edit_prompt,
    editable_positions,
    empty_canvas_html,
    empty_heatmap_dict,
    heatmap_dict,
    inspector_html,
    legend_html,
    standalone_html,
    stats_html,
    to_json,
)
from dlm_core.viz.export import canvas_css, play_interval_ms

log = logging.getLogger("diffusion_canvas")

ROOT = Path(__file__).resolve().parent
ASSETS = ROOT / "assets"
MODEL_ENV = "DIFFUSION_CANVAS_MODEL"
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


# -- LIMITS: every limit of the app in one place (README "Limits" describes them) ---------------------
# Per request. The UI ranges (the sampler allows more; the canvas and heatmap stay readable here); a
# value outside them, from the UI or the API, is refused with the field's label and range. The prompt
# is capped in characters before it is tokenized; the model's max_length (tokens) is checked after.
MAX_GEN_LENGTH = 512
MAX_STEPS = 512
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
FALLBACK_MODEL = "tiny-random"
SLOW_STEP_SECONDS = 0.25

# Tokenizers (HF fast tokenizers in particular) are not safe to *encode* from two threads at once;
# encoding happens when a run starts and decoding when it ends or a token text is first needed.
TOKENIZER_LOCK = threading.Lock()

STRATEGY_LABELS = {
    "low_confidence": "Most confident first (LLaDA)",
    "random": "Random order (LLaDA)",
    "maskgit_plus": "MaskGIT+ confidence (Dream)",
    "topk_margin": "Top-2 margin (Dream)",
    "entropy": "Lowest entropy first (Dream)",
    "origin": "Random by schedule (MDLM / Dream origin)",
    "threshold": "All above a threshold (Fast-dLLM)",
    "factor": "Factor rule (Fast-dLLM)",
    "left_to_right": "Left to right, one per step (like GPT)",
}
DREAM_STRATEGIES = ("maskgit_plus", "topk_margin", "entropy", "origin")
CACHE_CHOICES = [("Off (exact)", "off"), ("Prefix cache", "prefix"), ("Dual cache (prefix + suffix)", "dual")]
REMASK_CHOICES = [
    ("Off", "off"),
    ("Cap (ReMDM-cap)", "cap"),
    ("Rescale (ReMDM-rescale)", "rescale"),
    ("Least sure first (ReMDM-conf)", "confidence"),
]
FIELD_LABELS = {
    "prompt": "Prompt",
    "model": "Model",
    "strategy": "Strategy",
    "gen_length": "Length",
    "steps": "Steps",
    "block_length": "Block length",
    "temperature": "Temperature",
    "top_k": "Top-k",
    "top_p": "Top-p",
    "seed": "Seed",
    "threshold": "Threshold",
    "factor": "Factor",
    "eps": "Eps",
    "order_temperature": "Order randomness",
    "remask": "Re-masking",
    "eta": "Re-masking strength (eta)",
    "remask_t_on": "Re-mask from t",
    "remask_t_off": "Re-mask until t",
    "cfg_scale": "Guidance (CFG)",
    "cache": "KV cache",
    "selection": "Picked tokens",
    "file": "Trajectory file",
}


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


# --------------------------------------------------------------------------------------------------
# Errors: every message the user sees names the field (its label) and is HTML-escaped.
# --------------------------------------------------------------------------------------------------


def user_error(field: str, message: str) -> gr.Error:
    label = FIELD_LABELS.get(field, field)
    text = message if message.lower().startswith(label.lower()) else f"{label}: {message}"
    return gr.Error(html.escape(text, quote=False), title="Please check your input", print_exception=False)


KNOWN_ERRORS: tuple[type[Exception], ...] = (
    ConfigError,
    PromptError,
    TrajectoryError,
    EditError,
    registry.ModelNotFoundError,
    registry.ModelUnavailableError,
    registry.ModelRefusedError,
    registry.ModelTooLargeError,
)


def as_user_error(error: Exception) -> gr.Error:
    if isinstance(error, gr.Error):
        return error
    field = getattr(error, "field", None)
    message = getattr(error, "message", None) or str(error).splitlines()[0]
    if isinstance(error, registry.ModelNotFoundError | registry.ModelUnavailableError | registry.ModelRefusedError):
        field = "model"
    if isinstance(error, registry.ModelTooLargeError):
        field = "model"
    if isinstance(error, TrajectoryError):  # the key path inside the file, e.g. steps[3].committed
        field, message = "file", f"not a valid Diffusion Canvas trajectory ({error.field}: {error.message})"
    return user_error(field or "input", message)


def guarded(fn):
    """Known input errors -> a clear gr.Error; anything else is logged and shown without a traceback."""
    import functools
    import inspect

    if inspect.isgeneratorfunction(fn):

        @functools.wraps(fn)
        def generator(*args, **kwargs):
            try:
                yield from fn(*args, **kwargs)
            except gr.Error:
                raise
            except KNOWN_ERRORS as error:
                raise as_user_error(error) from None
            except Exception as error:  # noqa: BLE001 (the UI must never show a traceback)
                log.exception("unexpected error in %s", fn.__name__)
                raise gr.Error(
                    html.escape(f"Something went wrong ({type(error).__name__}: {error})", quote=False),
                    print_exception=False,
                ) from None

        return generator

    @functools.wraps(fn)
    def plain(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except gr.Error:
            raise
        except KNOWN_ERRORS as error:
            raise as_user_error(error) from None
        except Exception as error:  # noqa: BLE001
            log.exception("unexpected error in %s", fn.__name__)
            raise gr.Error(
                html.escape(f"Something went wrong ({type(error).__name__}: {error})", quote=False),
                print_exception=False,
            ) from None

    return plain


TEXT_SETTINGS = frozenset({"model", "prompt", "strategy", "remask", "cache"})  # the rest are numbers


def takes_settings(fn):
    """Let ``fn(session, values, request)`` take the settings as one dict while gradio sees one named
    parameter per setting: its API names a handler's parameters after the function's signature, and
    API clients pass the settings by those names."""
    import functools
    import inspect

    signature = inspect.Signature(
        [
            inspect.Parameter("session", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=Session),
            *(
                inspect.Parameter(
                    name, inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=str if name in TEXT_SETTINGS else float
                )
                for name in SETTINGS
            ),
            inspect.Parameter("request", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=gr.Request),
        ]
    )

    def split(args, kwargs) -> tuple[Session, dict[str, Any], gr.Request]:
        arguments = signature.bind(*args, **kwargs).arguments
        return arguments["session"], {name: arguments[name] for name in SETTINGS}, arguments["request"]

    if inspect.isgeneratorfunction(fn):

        def wrapper(*args, **kwargs):
            yield from fn(*split(args, kwargs))

    else:

        def wrapper(*args, **kwargs):
            return fn(*split(args, kwargs))

    functools.update_wrapper(wrapper, fn)
    del wrapper.__wrapped__  # inspect.signature must stop here, not at fn's three parameters
    wrapper.__signature__ = signature
    return wrapper


# Inputs whose bad values are reported with the field's label and allowed range. gradio's own check
# says only "Value 0 is less than minimum value 1." and cannot be configured; a component subclass
# would do, but gradio writes a .pyi stub next to any module defining one, and an instance-level
# override is lost because gradio rebuilds a session's component from its class on every property
# update. So the three classes' ``preprocess`` get one wrapper that acts only on components whose
# elem_id starts with FIELD_PREFIX (ours); every other component keeps gradio's behaviour.
FIELD_PREFIX = "dc-field-"
NAMED_ELEM_IDS = ("dc-scrub",)  # further inputs checked the same way (their elem_id is used by CSS/tests)


def _named_preprocess(original):
    def preprocess(self, payload):
        elem_id = str(getattr(self, "elem_id", "") or "")
        if not (elem_id.startswith(FIELD_PREFIX) or elem_id in NAMED_ELEM_IDS):
            return original(self, payload)
        if isinstance(self, gr.Slider):
            step = float(self.step or 1)
            return _check_number(self, payload, integer=step.is_integer() and float(self.minimum).is_integer())
        if isinstance(self, gr.Number):
            if payload is None:
                raise gr.Error(f"{self.label}: a number is required", print_exception=False)
            return _check_number(self, payload, integer=self.precision == 0)
        try:
            return original(self, payload)
        except gr.Error:
            allowed = ", ".join(str(value) for _, value in self.choices)
            raise gr.Error(
                html.escape(f"{self.label}: must be one of {allowed}, got {payload!r}", quote=False),
                print_exception=False,
            ) from None

    preprocess._diffusion_canvas = True
    return preprocess


for _cls in (gr.Slider, gr.Number, gr.Dropdown):
    if not getattr(_cls.preprocess, "_diffusion_canvas", False):
        _cls.preprocess = _named_preprocess(_cls.preprocess)


def _field(component_class, name: str, *args: Any, **kwargs: Any):
    return component_class(*args, elem_id=FIELD_PREFIX + name, **kwargs)


def _check_number(component: gr.components.Component, payload: Any, integer: bool) -> float | int:
    """``payload`` as a number within the component's range, or a gr.Error naming the field."""
    low, high = component.minimum, component.maximum
    kind = "an integer" if integer else "a number"

    def shown(x: float) -> str:
        return str(int(x)) if float(x).is_integer() else f"{x:g}"

    bounds = f" in [{shown(low)}, {shown(high)}]" if low is not None and high is not None else ""
    value: float | int | None = None
    if isinstance(payload, bool):
        value = None
    elif isinstance(payload, int):
        value = payload  # exact, even for 19-digit seeds
    elif isinstance(payload, float | str):
        try:
            number = float(payload)
        except ValueError:
            number = math.nan
        if math.isfinite(number):
            value = number
            if integer and number.is_integer():
                value = (
                    int(payload) if isinstance(payload, str) and payload.strip().lstrip("-").isdigit() else int(number)
                )
    ok = value is not None and (not integer or float(value).is_integer())
    ok = ok and (low is None or value >= low) and (high is None or value <= high)
    if not ok:
        raise gr.Error(
            html.escape(f"{component.label}: must be {kind}{bounds}, got {payload!r}", quote=False),
            print_exception=False,
        )
    return int(value) if integer else float(value)


# --------------------------------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------------------------------


def default_model_key() -> str:
    return os.environ.get(MODEL_ENV, "").strip() or registry.DEFAULT_MODEL


HUB_REPO_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,95}(/[A-Za-z0-9][A-Za-z0-9_.-]{0,95})?")


def checked_model_name(name: Any) -> str:
    """The Model field as a registry name (empty = the default). ``mlm:`` takes a Hugging Face Hub repo
    id only: a local folder (``mlm:../..``, ``mlm:/etc``) is refused, so no user-typed path is ever read
    (the default model set by the server's environment may still be a local path)."""
    if name is None:
        name = ""
    if not isinstance(name, str):
        raise user_error("model", f"must be a model name (text), got {type(name).__name__}")
    name = name.strip() or default_model_key()
    if name == default_model_key() or name in registry.REGISTRY:
        return name
    if len(name) > 200:
        raise user_error("model", f"a model name has at most 200 characters, got {len(name)}")
    if name.lower().startswith(registry.MLM_PREFIX):
        repo = name[len(registry.MLM_PREFIX) :].strip()
        if not HUB_REPO_ID.fullmatch(repo) or ".." in repo or Path(repo).expanduser().exists():
            raise user_error(
                "model",
                "mlm: takes a Hugging Face Hub repo id (owner/name, e.g. answerdotai/ModernBERT-base); "
                "local paths are not accepted from the web",
            )
    return name


def get_model(name: str | None) -> tuple[Any, str]:
    """(adapter, note). A built-in model that is not trained yet falls back to the untrained test
    model, with a note saying so; every other failure raises (shown as a message on the Model field)."""
    name = checked_model_name(name)
    try:
        return registry.load_model(name), ""
    except registry.ModelUnavailableError:
        spec = registry.get_spec(name)
        if not spec.builtin:
            raise
        note = (
            f"{spec.display_name} is not trained yet, so this is the untrained test model: "
            "its text is random characters, but every step and colour works the same way."
        )
        return registry.load_model(FALLBACK_MODEL), note


def model_note_html(model: Any, note: str) -> str:
    parts = [f'<div class="dc-model">Model: <b>{html.escape(model.name)}</b> · {html.escape(model.kind)}</div>']
    untrained = "untrained" in model.name.lower()
    if note or untrained:
        text = (
            note
            or "This is the untrained test model: its text is random characters, but every step works the same way."
        )
        parts.append(f'<div class="dc-warn">⚠ {html.escape(text)}</div>')
    return "".join(parts)


def model_choices() -> list[tuple[str, str]]:
    choices = []
    for spec in registry.list_models():
        label = spec.display_name
        if spec.download_gb:
            label += f" · {spec.download_gb:g} GB download"
        choices.append((label, spec.key))
    return choices


def strategy_choices() -> list[tuple[str, str]]:
    """Every strategy (an autoregressive model is switched to left-to-right by ``build_config``)."""
    return [(f"{STRATEGY_LABELS.get(n, n)} · {n}", n) for n in STRATEGIES]


# --------------------------------------------------------------------------------------------------
# Settings -> SamplerConfig
# --------------------------------------------------------------------------------------------------


def _maybe_int(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def build_config(
    prompt: str,
    strategy: str,
    gen_length: Any,
    steps: Any,
    block_length: Any,
    temperature: Any,
    top_k: Any,
    top_p: Any,
    seed: Any,
    threshold: Any,
    factor: Any,
    eps: Any,
    order_temperature: Any,
    remask: Any,
    eta: Any,
    remask_t_on: Any,
    remask_t_off: Any,
    cfg_scale: Any,
    cache: Any = "off",
    model_kind: str = "diffusion",
) -> tuple[SamplerConfig, str]:
    """(config, note) from UI values; 0 / 1.0 / "off" mean "not set" for the optional settings.

    Settings whose controls are hidden for this strategy or model do not apply (order randomness
    for a strategy that does not rank by confidence, re-masking for a strategy that cannot re-mask,
    guidance and the KV cache for an autoregressive model, steps for left-to-right); an
    autoregressive model always decodes left to right (with a note).
    ``steps`` outside [blocks, generation slots] is clamped with a note: the sliders are
    independent, so 32 steps for 16 tokens is an easy request to make. Everything else out of
    range raises ``ConfigError`` / ``PromptError`` naming the field and its allowed range.
    """
    if not isinstance(prompt, str) or not prompt.strip():
        raise PromptError("prompt", "prompt must contain at least one non-whitespace character")
    if len(prompt) > MAX_PROMPT_CHARS:
        raise PromptError("prompt", f"prompt must be at most {MAX_PROMPT_CHARS} characters, got {len(prompt)}")
    spec = STRATEGIES.get(strategy)
    gen_length = _maybe_int(gen_length)
    block_length = _maybe_int(block_length) or None
    steps = _maybe_int(steps)
    note = ""
    if model_kind == "autoregressive" and strategy in STRATEGIES and not STRATEGIES[strategy].autoregressive_ok:
        note = "An autoregressive model writes one token at a time, left to right: using that strategy."
        strategy = "left_to_right"
        spec = STRATEGIES[strategy]
    if spec is not None and spec.one_per_step:
        steps = None
    elif isinstance(steps, int) and isinstance(gen_length, int) and gen_length >= 0:
        slots = sum(segment.masks for segment in parse_prompt(prompt)) + gen_length
        size = block_length if isinstance(block_length, int) and block_length > 0 else slots
        if slots > 0:
            blocks = -(-slots // size)
            clamped = min(max(steps, blocks), slots)
            if clamped < steps:
                note = (
                    f"Steps: {steps} steps for {slots} tokens would leave steps with nothing to write; using {clamped}."
                )
            elif clamped > steps:
                note = f"Steps: {slots} tokens in blocks of {size} make {blocks} blocks, each needs a step; using {clamped}."
            steps = clamped
    if spec is not None and not spec.ranked:
        order_temperature = 0.0
    remask = None if remask in (None, "", "off", "none", "None") else remask
    if spec is not None and not spec.allows_remask:
        remask = None
    cache = None if cache in (None, "", "off", "none", "None") else cache
    if model_kind == "autoregressive":
        cfg_scale, cache = 0.0, None  # an AR model always decodes with its exact KV cache
    config = SamplerConfig(
        gen_length=gen_length,
        steps=steps,
        block_length=block_length,
        strategy=strategy,
        temperature=temperature,
        top_k=_maybe_int(top_k) or None,
        top_p=None if isinstance(top_p, int | float) and not isinstance(top_p, bool) and top_p >= 1 else top_p,
        seed=_maybe_int(seed),
        threshold=threshold,
        factor=factor,
        eps=eps,
        order_temperature=order_temperature,
        remask=remask,
        eta=eta,
        remask_t_on=remask_t_on,
        remask_t_off=remask_t_off,
        cfg_scale=cfg_scale,
        cache=cache,
        record_topk=True,
    )
    return config, note


# --------------------------------------------------------------------------------------------------
# Runs and sessions
# --------------------------------------------------------------------------------------------------

_export_root = Path(tempfile.mkdtemp(prefix="diffusion-canvas-"))
_run_ids = iter(range(1, 1 << 62))
_id_lock = threading.Lock()


def _next_id() -> int:
    with _id_lock:
        return next(_run_ids)


class Run:
    """One denoising run: the live generator, its recorder and its view. ``advance`` is the only
    place ``next()`` is called (under ``lock``, so Step and a stream can never race).

    While streaming, a worker thread (``start_worker``) runs the model step after step and the
    event handler renders whatever is newest at its own pace: the model never waits for gradio's
    per-message work, and rendering never waits for the model (see ``_stream``).
    """

    def __init__(self, model: Any, prompt: str | EncodedPrompt, config: SamplerConfig, label: str = ""):
        self.id = _next_id()
        self.created = time.monotonic()
        self.model = model
        self.prompt = prompt_text(prompt)
        self.config = config
        with TOKENIZER_LOCK:  # encodes the prompt; raises ConfigError / PromptError before any forward pass
            self._states = denoise(model, prompt, config)
        self.builder = TrajectoryBuilder(model, prompt, config)
        self.view = RunView.for_model(model, self.prompt, config, label, token_text=self._token_text)
        self.lock = threading.Lock()
        self.cancelled = threading.Event()
        self.trajectory: Trajectory | None = None
        self.progress = threading.Event()  # set by the worker after each step and when it ends
        self.worker: threading.Thread | None = None
        self.error: BaseException | None = None

    def _token_text(self, token_id: int) -> str:
        with TOKENIZER_LOCK:
            return self.model.token_text(token_id)

    def advance(self) -> bool:
        """Run one model step (the first call yields the initial canvas). False when finished or cancelled."""
        with self.lock:
            if self.cancelled.is_set() or self.view.complete:
                return False
            try:
                state = next(self._states)
            except StopIteration:
                return False
            self.view.add(self.builder.add(state))
            if self.view.complete:
                self.view.status = "done"
            return True

    def start_worker(self) -> None:
        """Run steps in a background thread while ``view.status`` is "running" (not cancelled)."""
        if self.worker is not None and self.worker.is_alive():
            return
        self.error = None
        self.deadline = time.monotonic() + MAX_RUN_SECONDS
        self.timed_out = False
        self.worker = threading.Thread(target=self._work, name=f"diffusion-canvas-run-{self.id}", daemon=True)
        self.worker.start()

    def _work(self) -> None:
        try:
            while self.view.status == "running" and not self.cancelled.is_set():
                if time.monotonic() > self.deadline:
                    self.timed_out = True  # _stream then ends it like Stop, with a note
                    break
                if not self.advance():
                    break
                self.progress.set()
        except BaseException as error:  # noqa: BLE001 (handed to the event handler, which reports it)
            self.error = error
            self.cancel()
        finally:
            self.progress.set()

    @property
    def working(self) -> bool:
        return self.worker is not None and self.worker.is_alive()

    def cancel(self, status: str = "stopped") -> None:
        self.cancelled.set()
        if self.view.status in ("running", "paused"):
            self.view.status = status
        self._states = iter(())  # drop the sampler generator (and its tensors) now

    def finish(self) -> Trajectory:
        """The recorded trajectory (decodes the final text once)."""
        with self.lock:
            if self.trajectory is None or self.trajectory.num_steps != self.view.last_step:
                with TOKENIZER_LOCK:
                    self.trajectory = self.builder.build()
                self.view.final_text = self.trajectory.final_text
            return self.trajectory


_sessions: weakref.WeakValueDictionary[str, Session] = weakref.WeakValueDictionary()


class Session:
    """What one browser tab sees: its current run (or replay) and the canvas's view state."""

    def __init__(self) -> None:
        self.run: Run | None = None
        self.view: RunView | None = None
        self.trajectory: Trajectory | None = None
        self.shown_step: int | None = None  # None = newest
        self.pinned = False  # the user scrubbed during a live run: stop moving the canvas
        self.selected: set[int] = set()
        self.inspected: int | None = None
        self.play_id = 0
        self.folder: Path | None = None
        self.exported: Trajectory | None = None  # the trajectory whose files the downloads offer
        self.lock = threading.Lock()

    def __deepcopy__(self, memo: dict) -> Session:  # gr.State copies its value; a session is per tab
        return self

    def bind(self, request: gr.Request | None) -> None:
        key = getattr(request, "session_hash", None)
        if key:
            _sessions[key] = self

    def start(self, run: Run) -> None:
        """Make ``run`` current; the previous run of this tab stops before its next step."""
        with self.lock:
            if self.run is not None and self.run is not run:
                self.run.cancel()
            self.run = run
            self.view = run.view
            self.trajectory = None
            self.shown_step = None
            self.pinned = False
            self.selected.clear()
            self.inspected = None
            self.play_id += 1
        keep(self)

    def show_replay(self, view: RunView, trajectory: Trajectory) -> None:
        with self.lock:
            if self.run is not None:
                self.run.cancel()
            self.run = None
            self.view = view
            self.trajectory = trajectory
            self.shown_step = None
            self.pinned = False
            self.selected.clear()
            self.inspected = None
            self.play_id += 1
        keep(self)

    def close(self) -> None:
        """Stop the run and release everything this tab holds (tab closed, state deleted, or evicted)."""
        with self.lock:
            if self.run is not None:
                self.run.cancel()
            self.play_id += 1
            self.run, self.view, self.trajectory, self.exported = None, None, None, None
            self.selected.clear()
            if self.folder is not None:
                shutil.rmtree(self.folder, ignore_errors=True)
                self.folder = None

    def kept_bytes(self) -> int:
        view = self.view
        if view is None or not view.states:
            return 0
        return len(view.states) * int(view.states[0].tokens.shape[0]) * BYTES_PER_STEP_POSITION

    def export_folder(self) -> Path:
        if self.folder is None:
            self.folder = Path(tempfile.mkdtemp(prefix="session-", dir=_export_root))
        return self.folder


_kept: OrderedDict[int, weakref.ref[Session]] = OrderedDict()  # least recently started first
_kept_lock = threading.Lock()


def keep(session: Session) -> None:
    """``session`` now holds a new run or replay: count it, and release the least recently started idle
    sessions while more than KEPT_RUNS_MAX are kept or they hold more than KEPT_RUNS_BYTES."""
    released = []
    with _kept_lock:
        _kept[id(session)] = weakref.ref(session)
        _kept.move_to_end(id(session))
        alive = [(key, ref()) for key, ref in _kept.items()]
        for key, other in alive:
            if other is None:
                del _kept[key]
        alive = [(key, other) for key, other in alive if other is not None]
        total = sum(other.kept_bytes() for _, other in alive)
        for key, other in alive[:-1]:
            if len(_kept) <= KEPT_RUNS_MAX and total <= KEPT_RUNS_BYTES:
                break
            if other.run is not None and other.run.working:
                continue  # streaming right now: it is released once it is no longer the newest
            total -= other.kept_bytes()
            del _kept[key]
            released.append(other)
    for other in released:
        other.close()


def new_session() -> Session:
    return Session()


def close_session(session: Any) -> None:
    if isinstance(session, Session):
        session.close()


def on_unload(request: gr.Request) -> None:
    """The tab closed: stop its run now (gr.State itself is only deleted an hour later)."""
    session = _sessions.pop(getattr(request, "session_hash", ""), None)
    if session is not None:
        session.close()


# --------------------------------------------------------------------------------------------------
# The UI
# --------------------------------------------------------------------------------------------------


def load_examples() -> list[dict[str, Any]]:
    return json.loads((ASSETS / "examples.json").read_text(encoding="utf-8"))


CANVAS_JS = """
element.addEventListener('click', (event) => {
  const span = event.target.closest('[data-i]');
  if (!span || !element.contains(span)) return;
  trigger('token', {index: Number(span.dataset.i)});
});
"""

EMPTY_INSPECTOR = (
    '<div class="dc-inspect dc-empty">Click any token or mask in the canvas to see what the model was '
    "considering for it at the step shown: its top guesses and how sure it was.</div>"
)
RESUME_LABEL = "Continue ▶"
EMPTY_STATS = '<div class="dc-stats dc-empty">Statistics appear here once a run starts.</div>'
PROJECTOR_JS = (
    "(on) => { const root = document.querySelector('#dc-root');"
    " if (root) root.classList.toggle('dc-projector', !!on);"
    " setTimeout(() => window.dispatchEvent(new Event('resize')), 60); return []; }"  # plotly re-fits its width
)


def plot(figure: dict) -> PlotData:
    """A figure dict as gr.Plot's value (our compact JSON, not plotly.graph_objects)."""
    return PlotData(type="plotly", plot=to_json(figure))


class UI:
    """The components of the Canvas tab (built by ``build_canvas_tab``)."""

    def __init__(self) -> None:
        self.c: dict[str, Any] = {}

    def __getattr__(self, name: str) -> Any:
        try:
            return self.__dict__["c"][name]
        except KeyError:
            raise AttributeError(name) from None


SETTINGS = (
    "model",
    "prompt",
    "strategy",
    "gen_length",
    "steps",
    "block_length",
    "temperature",
    "top_k",
    "top_p",
    "seed",
    "threshold",
    "factor",
    "eps",
    "order_temperature",
    "remask",
    "eta",
    "remask_t_on",
    "remask_t_off",
    "cfg_scale",
    "cache",
)


DEFAULT_ORDER_TEMPERATURE = BUILTIN_ORDER_TEMPERATURE  # measured on the default (built-in) model

EXAMPLE_DEFAULTS = {
    "strategy": "low_confidence",
    "gen_length": 64,
    "steps": 32,
    "block_length": 0,
    "temperature": 0.0,
    "top_k": 0,
    "top_p": 0.95,
    "seed": 0,
    "threshold": 0.9,
    "factor": 1.0,
    "eps": 0.001,
    "order_temperature": DEFAULT_ORDER_TEMPERATURE,
    "remask": "off",
    "eta": 0.05,
    "remask_t_on": 1.0,
    "remask_t_off": 0.0,
    "cfg_scale": 0.0,
    "cache": "off",
}


def build_canvas_tab(ui: UI) -> None:
    """The main tab: prompt, settings, live canvas, heatmap, inspector, stats, export."""
    c = ui.c
    model, note = get_model(default_model_key())
    examples = load_examples()
    with gr.Row(equal_height=False):
        c["prompt"] = gr.Textbox(
            label="Prompt",
            value=examples[0]["prompt"],
            lines=3,
            max_lines=12,
            scale=5,
            info="Your text. The model continues it. Write [MASK] for one blank it should fill, [MASK:5] for five "
            "blanks (write \\[MASK for a literal [MASK).",
            elem_id="dc-prompt",
        )
        with gr.Column(scale=1, min_width=170, elem_id="dc-actions"):
            c["generate"] = gr.Button("Generate", variant="primary", elem_id="dc-generate")
            c["step"] = gr.Button("Step ▸", elem_id="dc-step")
            c["resume"] = gr.Button(RESUME_LABEL, visible=False, elem_id="dc-continue")
            c["stop"] = gr.Button("Stop ■", variant="stop", elem_id="dc-stop")
    with gr.Column(elem_id="dc-examples") as examples_column:
        pass  # filled below, once every input the examples set exists
    with gr.Row(elem_id="dc-main", equal_height=False):
        with gr.Column(scale=1, min_width=280, elem_id="dc-settings"):
            c["model"] = gr.Dropdown(
                choices=model_choices(),
                value=default_model_key(),
                label="Model",
                info="Which model writes. The built-in one learned from Shakespeare's plays.",
                allow_custom_value=True,  # also mlm:<repo id>; unknown names get a clear message
                elem_id="dc-model",
            )
            kind = model.kind
            c["strategy"] = _field(
                gr.Dropdown,
                "strategy",
                choices=strategy_choices(),
                value="low_confidence" if kind != "autoregressive" else "left_to_right",
                label="Strategy",
                info="How the model picks which masks to fill at each step.",
            )
            c["gen_length"] = _field(
                gr.Slider,
                "gen_length",
                0,
                MAX_GEN_LENGTH,
                value=64,
                step=1,
                label="Length",
                info="Tokens to add after your prompt (0 = only fill the [MASK] blanks).",
            )
            c["steps"] = _field(
                gr.Slider,
                "steps",
                1,
                MAX_STEPS,
                value=32,
                step=1,
                label="Steps",
                info="Denoising steps (model calls). Fewer steps = more tokens written per step.",
            )
            c["block_length"] = _field(
                gr.Slider,
                "block_length",
                0,
                MAX_GEN_LENGTH,
                value=32,
                step=1,
                label="Block length",
                info="Write in chunks of this many tokens, left to right (0 = all in one chunk).",
            )
            with gr.Accordion("Sampling", open=False):
                c["temperature"] = _field(
                    gr.Slider,
                    "temperature",
                    0,
                    2,
                    value=1.0,
                    step=0.05,
                    label="Temperature",
                    info="0 = always the most likely token; higher = more random, more varied.",
                )
                c["top_k"] = _field(
                    gr.Slider,
                    "top_k",
                    0,
                    200,
                    value=0,
                    step=1,
                    label="Top-k",
                    info="Only consider the k most likely tokens (0 = no limit).",
                )
                c["top_p"] = _field(
                    gr.Slider,
                    "top_p",
                    0.05,
                    1,
                    value=0.95,
                    step=0.05,
                    label="Top-p",
                    info="Only consider the likeliest tokens that cover this much probability (1 = no limit).",
                )
                c["seed"] = _field(
                    gr.Number,
                    "seed",
                    value=0,
                    precision=0,
                    minimum=0,
                    maximum=MAX_SEED,
                    label="Seed",
                    info="Same seed + same settings = exactly the same run.",
                )
            with gr.Accordion("Strategy settings", open=False, visible=True) as strategy_box:
                c["threshold"] = _field(
                    gr.Slider,
                    "threshold",
                    0.05,
                    1,
                    value=0.9,
                    step=0.05,
                    label="Threshold",
                    visible=False,
                    info="Write every mask the model is at least this sure about (at least one per step).",
                )
                c["factor"] = _field(
                    gr.Slider,
                    "factor",
                    0.1,
                    10,
                    value=1.0,
                    step=0.1,
                    label="Factor",
                    visible=False,
                    info="Fast-dLLM's f: larger = more tokens per step, more risk of clashing tokens.",
                )
                c["eps"] = _field(
                    gr.Slider,
                    "eps",
                    0.0001,
                    0.5,
                    value=0.001,
                    step=0.0001,
                    label="Eps",
                    visible=False,
                    info="Dream's final noise level (small values are standard).",
                )
                c["order_temperature"] = _field(
                    gr.Slider,
                    "order_temperature",
                    0,
                    1,
                    value=DEFAULT_ORDER_TEMPERATURE,
                    step=0.01,
                    label="Order randomness",
                    visible=kind != "autoregressive",
                    info="0 = always write the surest masks first; a little randomness (Dream's alg_temp) "
                    "stops the model looping on its favourite phrases.",
                )
                c["no_strategy_settings"] = gr.Markdown(
                    "This strategy has no extra settings.", visible=kind == "autoregressive"
                )
            c["strategy_box"] = strategy_box
            with gr.Accordion("Revision: re-masking (ReMDM)", open=False) as remask_box:
                c["remask"] = _field(
                    gr.Dropdown,
                    "remask",
                    choices=REMASK_CHOICES,
                    value="off",
                    label="Re-masking",
                    info="Let the model take back written tokens and rewrite them.",
                )
                c["eta"] = _field(
                    gr.Slider,
                    "eta",
                    0,
                    1,
                    value=0.05,
                    step=0.01,
                    label="Re-masking strength (eta)",
                    info="The largest share of written tokens that may be re-masked per step.",
                )
                c["remask_t_on"] = _field(
                    gr.Slider,
                    "remask_t_on",
                    0,
                    1,
                    value=1.0,
                    step=0.05,
                    label="Re-mask from t",
                    info="Re-mask only while at most this fraction of the block is still masked…",
                )
                c["remask_t_off"] = _field(
                    gr.Slider,
                    "remask_t_off",
                    0,
                    1,
                    value=0.0,
                    step=0.05,
                    label="Re-mask until t",
                    info="…and more than this fraction is.",
                )
            c["remask_box"] = remask_box
            with gr.Accordion("Guidance and speed", open=False) as cfg_box:
                c["cfg_scale"] = _field(
                    gr.Slider,
                    "cfg_scale",
                    0,
                    5,
                    value=0.0,
                    step=0.1,
                    label="Guidance (CFG)",
                    info="> 0 makes the text follow the prompt more closely; costs 2 model calls per step.",
                )
                c["cache"] = _field(
                    gr.Dropdown,
                    "cache",
                    choices=CACHE_CHOICES,
                    value="off",
                    label="KV cache",
                    info="Reuse the model's work on the text outside the current block: faster, slightly "
                    "approximate (Fast-dLLM). Best with a block length. Not with guidance.",
                )
            c["cfg_box"] = cfg_box
        with gr.Column(scale=3, min_width=320, elem_id="dc-display"):
            c["model_note"] = gr.HTML(model_note_html(model, note), elem_id="dc-model-note")
            gr.HTML(legend_html(), elem_id="dc-legend")
            c["canvas"] = gr.HTML(
                empty_canvas_html(), elem_id="dc-canvas", js_on_load=CANVAS_JS, apply_default_css=False
            )
            with gr.Row(elem_id="dc-player", equal_height=True):
                c["scrub"] = gr.Slider(
                    0,
                    1,
                    value=0,
                    step=1,
                    label="Step shown",
                    scale=5,
                    min_width=300,
                    info="Drag to see the canvas and heatmap at any step (also while it runs).",
                    elem_id="dc-scrub",
                )
                c["play"] = gr.Button("▶ Play", scale=1, min_width=90, elem_id="dc-play")
            with gr.Row(equal_height=True):
                c["projector"] = gr.Checkbox(
                    label="Projector mode",
                    value=False,
                    info="Big text for a classroom; hides the settings.",
                    elem_id="dc-projector",
                )
                c["pick"] = gr.Checkbox(
                    label="Pick tokens to re-write",
                    value=False,
                    info="Click written tokens to mark them, then let the model re-write only those.",
                    elem_id="dc-pick",
                )
            with gr.Row(visible=False, equal_height=True) as pick_row:
                c["selection"] = gr.Markdown("No tokens picked yet.", elem_id="dc-selection")
                c["rewrite"] = gr.Button("Re-write picked tokens", variant="primary", elem_id="dc-rewrite")
                c["clear_pick"] = gr.Button("Clear", elem_id="dc-clear-pick")
            c["pick_row"] = pick_row
            c["inspector"] = gr.HTML(EMPTY_INSPECTOR, elem_id="dc-inspector", apply_default_css=False)
            c["heatmap"] = gr.Plot(plot(empty_heatmap_dict()), label="Heatmap: steps × positions", elem_id="dc-heatmap")
            with gr.Row(equal_height=False):
                with gr.Column(scale=1, min_width=260):
                    c["stats"] = gr.HTML(EMPTY_STATS, elem_id="dc-stats", apply_default_css=False)
                with gr.Column(scale=1, min_width=260):
                    c["final_text"] = gr.Textbox(
                        label="Final text",
                        lines=4,
                        max_lines=16,
                        interactive=False,
                        buttons=["copy"],
                        elem_id="dc-final-text",
                    )
                    with gr.Row():
                        c["download_json"] = gr.DownloadButton(
                            "Trajectory (.json)", value=None, interactive=False, size="sm", elem_id="dc-download-json"
                        )
                        c["download_html"] = gr.DownloadButton(
                            "Offline replay (.html)",
                            value=None,
                            interactive=False,
                            size="sm",
                            elem_id="dc-download-html",
                        )
                        c["upload"] = gr.UploadButton(
                            "Replay a .json file",
                            file_types=[".json"],
                            type="filepath",
                            size="sm",
                            elem_id="dc-upload",
                        )
    with examples_column:
        # Every setting is part of an example (missing keys take EXAMPLE_DEFAULTS), so clicking one
        # always reproduces the same run whatever was changed before.
        example_fields = [name for name in SETTINGS if name != "model"]
        c["examples"] = gr.Examples(
            examples=[[{**EXAMPLE_DEFAULTS, **e}[name] for name in example_fields] for e in examples],
            inputs=[c[name] for name in example_fields],
            example_labels=[e["label"] for e in examples],
            label="Examples: click one, then Generate",
            examples_per_page=10,
        )


def build_howto_tab() -> None:
    gr.Markdown((ASSETS / "how_it_works.md").read_text(encoding="utf-8"), elem_id="dc-howto")


# -- rendering helpers -----------------------------------------------------------------------------


def _run_outputs(ui: UI) -> list[Any]:
    return [
        ui.canvas,
        ui.heatmap,
        ui.scrub,
        ui.stats,
        ui.final_text,
        ui.inspector,
        ui.download_json,
        ui.download_html,
        ui.resume,
        ui.selection,
    ]


def _settle(ui: UI, session: Session, view: RunView, *, status: str | None = None, note: str = "") -> dict:
    """Everything for a view that is not streaming (paused, finished, stopped, replayed, scrubbed)."""
    step = view.last_step if session.shown_step is None else view.clamp(session.shown_step)
    return {
        ui.canvas: canvas_html(
            view, step, detail=True, selected=session.selected, inspected=session.inspected, status=status, note=note
        ),
        ui.heatmap: plot(heatmap_dict(view, cursor=step, revision=str(id(view)))),
        ui.scrub: gr.update(maximum=max(1, view.last_step), value=step),
        ui.stats: stats_html(view, step),
        ui.inspector: inspector_html(view, step, session.inspected),
        ui.resume: gr.update(visible=view.status == "paused"),
    }


def _exports(ui: UI, session: Session, trajectory: Trajectory, view: RunView) -> dict:
    """Write the trajectory JSON and the offline HTML replay of the shown run (once per run)."""
    if session.exported is trajectory:
        return {}
    session.exported = trajectory
    folder = session.export_folder()
    json_path = folder / "diffusion-canvas-trajectory.json"
    html_path = folder / "diffusion-canvas-replay.html"
    json_path.write_text(trajectory.to_json(), encoding="utf-8")
    html_path.write_text(standalone_html(view), encoding="utf-8")
    return {
        ui.download_json: gr.update(value=str(json_path), interactive=True),
        ui.download_html: gr.update(value=str(html_path), interactive=True),
    }


def _stream(ui: UI, session: Session, run: Run, extra: dict | None = None) -> Iterator[dict]:
    """Stream ``run`` to the end: a worker thread runs the model, this loop sends the newest state
    by the ``UpdatePolicy`` rule (every step up to 30 frames/s, the heatmap throttled). ``extra``:
    plain values for further outputs of the event, sent with every message."""
    view = run.view
    view.status = "running"
    policy = UpdatePolicy()
    revision = str(id(view))
    held: dict = {}  # the last value sent to every output (see below)
    extra = extra or {}
    run.start_worker()

    def current() -> bool:
        return session.run is run and not run.cancelled.is_set()

    try:
        while True:
            run.progress.wait(timeout=0.5)
            run.progress.clear()
            if run.error is not None:
                raise run.error
            if not current() or view.status == "paused":
                return  # superseded, stopped (Stop shows the result) or paused (Step took over)
            if view.complete or not run.working:
                break
            if not view.states or view.last_step == policy.shown_step:
                continue
            # The first frame is always step 0 (every slot a mask: where diffusion starts); then the
            # newest state (consistent even while the worker adds the next one), highlighting
            # everything written since the last frame shown.
            if policy.shown_step < 0:
                frame = view.frame(0)
            else:
                frame = view.frame(None, since=policy.shown_step)
            step = frame.step
            send_canvas, send_heatmap = policy.decide(step, view.heat(step).size)
            update: dict = {}
            if send_canvas and not session.pinned:
                # Slow models (>= 0.25 s a step, e.g. an 8B model on CPU) get tooltips with the top-5
                # guesses live; for fast ones tooltips would only inflate every frame (~40 % of its
                # bytes) and change before anyone hovers. Clicking a token inspects it either way.
                slow = step > 0 and frame.elapsed / step >= SLOW_STEP_SECONDS
                update[ui.canvas] = canvas_html(view, frame=frame, status="running", detail=slow, titles=slow)
                policy.mark_shown(step)
            if send_heatmap:
                update[ui.heatmap] = plot(heatmap_dict(view, upto=step, revision=revision))
                update[ui.stats] = stats_html(view, step)
                update[ui.scrub] = gr.update(maximum=max(1, step), **({} if session.pinned else {"value": step}))
            if not update:
                continue
            if held:
                message = {**held, **extra, **update}
            else:  # the first message also resets the side panels of the previous run
                message = {
                    **extra,
                    **update,
                    ui.resume: gr.update(visible=False),
                    ui.final_text: "",
                    ui.inspector: EMPTY_INSPECTOR,
                    ui.download_json: gr.update(value=None, interactive=False),
                    ui.download_html: gr.update(value=None, interactive=False),
                    ui.selection: "No tokens picked yet.",
                }
                held.update(
                    {
                        ui.resume: RESUME_LABEL,
                        ui.final_text: "",
                        ui.inspector: EMPTY_INSPECTOR,
                        ui.download_json: None,
                        ui.download_html: None,
                        ui.selection: "No tokens picked yet.",
                        ui.canvas: update.get(ui.canvas, empty_canvas_html()),
                        ui.heatmap: update.get(ui.heatmap, plot(empty_heatmap_dict())),
                        ui.stats: update.get(ui.stats, EMPTY_STATS),
                        ui.scrub: 0,
                    }
                )
            # Unchanged outputs are re-sent as the same plain values, not gr.skip(): gradio turns
            # a skip into a property update that rebuilds the component (~1.5 ms each, measured),
            # while an identical value costs a few microseconds and nothing on the wire (diffs).
            for component in (ui.canvas, ui.heatmap, ui.stats):
                if component in update:
                    held[component] = update[component]
            if ui.scrub in update and not session.pinned:
                held[ui.scrub] = step
            yield message
            time.sleep(policy.until_next_canvas())  # frame pacing: steps arriving meanwhile are folded in
    except GeneratorExit:  # the event was cancelled (Stop, tab closed): the worker stops after its step
        run.cancel()
        raise
    if not current() or view.status == "paused":
        return
    view.status = "done" if view.complete else "stopped"
    trajectory = run.finish()
    session.trajectory = trajectory
    if not session.pinned:
        session.shown_step = None
    note = ""
    if getattr(run, "timed_out", False) and not view.complete:
        note = f"Stopped after {view.last_step} steps: a run may use at most {MAX_RUN_SECONDS:g} s of model time."
        gr.Warning(html.escape(note, quote=False))
    # Every message of a stream carries every output. gradio sends a stream's messages as diffs that
    # the browser applies *in place*: a skipped output after a figure is diffed into an empty update,
    # which deletes the figure from the object the plot component is about to draw (seen as a
    # heatmap stuck at its first frame). Unchanged values cost nothing on the wire.
    final = {
        ui.download_json: None,
        ui.download_html: None,
        ui.selection: "No tokens picked yet.",
        **held,
        **extra,
        **_settle(ui, session, view, note=note),
    }
    final[ui.final_text] = trajectory.final_text
    yield final
    yield {**final, **_exports(ui, session, trajectory, view)}


# -- event handlers ----------------------------------------------------------------------------------


def make_handlers(ui: UI) -> dict[str, Any]:  # noqa: C901 (one closure per event, all small)
    def new_run(session: Session, values: dict[str, Any], label: str = "", edit: RunView | None = None) -> Run:
        """Start a run of ``values``; with ``edit``, re-write the picked tokens of that shown run."""
        model, note = get_model(values["model"])
        config, clamp_note = build_config(**{k: values[k] for k in SETTINGS if k != "model"}, model_kind=model.kind)
        if clamp_note:
            gr.Warning(html.escape(clamp_note, quote=False))
        prompt: str | EncodedPrompt = values["prompt"]
        if edit is not None and edit.meta.model == model.name and edit.meta.mask_id == model.mask_id:
            # The same model wrote it: reuse its token ids (no re-tokenising, no second chat template).
            # Another model gets the edit as text, which its own tokenizer encodes.
            prompt = canvas_prompt(model, *edit_canvas(edit, session.selected), text=values["prompt"])
        run = Run(model, prompt, config, label=label)
        session.start(run)
        return run

    @guarded
    @takes_settings
    def generate(session: Session, values: dict[str, Any], request: gr.Request):
        """Start a new run with these settings and stream it to the end."""
        session.bind(request)
        run = new_run(session, values)
        yield from _stream(ui, session, run)

    @guarded
    @takes_settings
    def step(session: Session, values: dict[str, Any], request: gr.Request):
        """Advance the current run by one step (pausing a live one); start a paused run if none."""
        session.bind(request)
        run = session.run
        if run is not None and run.view.status == "running":
            run.view.status = "paused"
        elif run is None or run.view.status != "paused" or session.view is not run.view:
            run = new_run(session, values)
            run.view.status = "paused"
            run.advance()  # the initial canvas: every slot masked
            session.shown_step = None
            out = _settle(ui, session, run.view, note="Press Step again to run the first denoising step.")
            out.update(
                {
                    ui.final_text: "",
                    ui.download_json: gr.update(value=None, interactive=False),
                    ui.download_html: gr.update(value=None, interactive=False),
                }
            )
            return out
        run.advance()
        session.shown_step = None
        session.pinned = False
        view = run.view
        if view.complete:
            trajectory = run.finish()
            session.trajectory = trajectory
            out = _settle(ui, session, view)
            out[ui.final_text] = trajectory.final_text
            out.update(_exports(ui, session, trajectory, view))
            return out
        return _settle(ui, session, view)

    @guarded
    def resume(session: Session, request: gr.Request):
        """Continue a paused run to the end."""
        session.bind(request)
        run = session.run
        if run is None or run.view.status != "paused":
            gr.Info("Nothing is paused: press Generate for a new run.")
            return
        yield from _stream(ui, session, run)

    def stop(session: Session):
        """Stop the run (or replay animation); show what was written so far."""
        session.play_id += 1
        run = session.run
        if run is None or run.view.status not in ("running", "paused"):
            return gr.skip()
        run.cancel()
        with run.lock:  # wait for the step in flight (at most one) so the view is final
            pass
        view = run.view
        view.status = "stopped"
        trajectory = run.finish()
        session.trajectory = trajectory
        session.shown_step = None
        session.pinned = False
        out = _settle(ui, session, view, note=f"Stopped after {view.last_step} steps; masks left are still masked.")
        out[ui.final_text] = trajectory.final_text
        return out  # the downloads follow in `exports` (chained), so Stop answers at once

    def exports(session: Session):
        """Build the downloads of the shown run if they are not there yet (after Stop)."""
        view, trajectory = session.view, session.trajectory
        if view is None or trajectory is None or view.status == "running":
            return gr.skip()
        return _exports(ui, session, trajectory, view) or gr.skip()

    def scrub(session: Session, value: float):
        """Show the canvas at the step picked on the slider."""
        view = session.view
        if view is None or not view.states:
            return gr.skip()
        step = view.clamp(value)
        live = view.status == "running"
        session.pinned = live and step < view.last_step
        session.shown_step = None if (live and not session.pinned) or step == view.last_step else step
        out = {
            ui.canvas: canvas_html(
                view,
                step,
                detail=True,
                selected=session.selected,
                inspected=session.inspected,
                status="running" if live else None,
                note="Live run continues; drag to the right end to follow it again." if session.pinned else "",
            ),
            ui.stats: stats_html(view, step),
            ui.inspector: inspector_html(view, step, session.inspected),
        }
        return out

    def token_clicked(session: Session, pick: bool, event: gr.EventData):
        """Inspect a position, or (pick mode) mark it for re-writing."""
        view = session.view
        try:
            index = int(event.index)
        except (AttributeError, TypeError, ValueError):
            return gr.skip()
        if view is None or not view.states or not 0 <= index < view.length:
            return gr.skip()
        step = view.last_step if session.shown_step is None else view.clamp(session.shown_step)
        out: dict = {}
        if pick:
            if view.status in ("running",):
                gr.Info("Wait until the run has finished (or press Stop), then pick tokens.")
                return gr.skip()
            if index not in editable_positions(view):
                gr.Info("Only written tokens of the answer can be picked (not the prompt, nor text after the end).")
                return gr.skip()
            session.selected ^= {index}
            out[ui.selection] = _selection_text(view, session.selected)
        else:
            session.inspected = index
        out[ui.inspector] = inspector_html(view, step, session.inspected)
        out[ui.canvas] = canvas_html(
            view,
            step,
            detail=True,
            selected=session.selected,
            inspected=session.inspected,
            status="running" if view.status == "running" else None,
        )
        return out

    def clear_pick(session: Session):
        session.selected.clear()
        view = session.view
        out: dict = {ui.selection: "No tokens picked yet."}
        if view is not None and view.states and view.status != "running":
            out[ui.canvas] = canvas_html(view, session.shown_step, detail=True, inspected=session.inspected)
        return out

    @guarded
    @takes_settings
    def rewrite(session: Session, values: dict[str, Any], request: gr.Request):
        """Re-mask the picked tokens and let the model re-write only those."""
        session.bind(request)
        view = session.view
        if view is None or not view.states:
            raise user_error("selection", "run the model first, then pick tokens to re-write")
        values = dict(values)
        prompt, slots = edit_prompt(view, session.selected)
        values.update(prompt=prompt, gen_length=0, block_length=0)
        steps = values.get("steps") or slots
        values["steps"] = max(1, min(int(steps), slots))
        run = new_run(session, values, label=f"hand edit of {slots} token(s)", edit=view)
        # The edit shows up as a prompt with [MASK] placeholders; pick mode ends (chained `.then`).
        yield from _stream(ui, session, run, extra={ui.prompt: prompt})

    def end_pick() -> tuple:
        return False, gr.update(visible=False)

    def play(session: Session):
        """Replay the shown run step by step (stop with Stop)."""
        view = session.view
        if view is None or not view.states:
            gr.Info("Nothing to play yet: press Generate first.")
            return
        if view.status == "running":
            gr.Info("The run is still going; press Stop or wait for it to finish.")
            return
        session.play_id += 1
        my_id = session.play_id
        interval = play_interval_ms(view.last_step) / 1000
        for frame in view.iter_frames():  # incremental: O(positions) per frame
            if session.play_id != my_id or session.view is not view:
                return
            session.shown_step = frame.step
            # Plain values only (the slider's range is already right): no component is rebuilt.
            yield (
                canvas_html(view, frame=frame, selected=session.selected, inspected=session.inspected),
                frame.step,
                stats_html(view, frame.step),
            )
            time.sleep(interval)
        session.shown_step = None
        yield (
            canvas_html(view, detail=True, selected=session.selected, inspected=session.inspected),
            view.last_step,
            stats_html(view),
        )

    @guarded
    def upload(session: Session, path: str | None, request: gr.Request):
        """Replay a trajectory JSON file (no model needed)."""
        session.bind(request)
        if not path:
            return gr.skip()
        size = os.path.getsize(path)
        if size > MAX_UPLOAD_BYTES:
            raise user_error("file", f"the file is {size / 1e6:.1f} MB; the limit is {UPLOAD_LIMIT_TEXT}")
        with open(path, "rb") as handle:
            data = handle.read(MAX_UPLOAD_BYTES + 1)
        containers = data.count(b"[") + data.count(b"{")
        if containers > MAX_UPLOAD_CONTAINERS:
            raise user_error(
                "file", f"the file has {containers} JSON arrays and objects; the limit is {MAX_UPLOAD_CONTAINERS}"
            )
        trajectory = Trajectory.from_json(data)
        view = RunView.from_trajectory(trajectory, label=f"uploaded file {Path(path).name}")
        view.status = "replay"
        session.show_replay(view, trajectory)
        out = _settle(ui, session, view)
        out[ui.final_text] = trajectory.final_text
        out[ui.prompt] = trajectory.prompt  # Generate re-runs it with the current settings
        out.update(_exports(ui, session, trajectory, view))
        return out

    @guarded
    def model_changed(name: str, strategy: str):
        """Load a built-in model (instant); an autoregressive one switches the strategy to left to
        right. Hub models are only described here: they download (gigabytes) on the first Generate."""
        spec = registry.get_spec(checked_model_name(name))
        if not spec.builtin and spec.key not in registry.cached_models():
            size = f"about {spec.download_gb:g} GB" if spec.download_gb else "its weights"
            note = (
                f'<div class="dc-model">Model: <b>{html.escape(spec.display_name)}</b></div>'
                f'<div class="dc-warn">{html.escape(spec.description)} The first Generate downloads {size} '
                "and needs a machine with enough memory; the built-in model runs anywhere.</div>"
            )
            return note, gr.update(), gr.update(visible=True)
        model, note = get_model(name)
        autoregressive = model.kind == "autoregressive"
        return (
            model_note_html(model, note),
            gr.update(value="left_to_right") if autoregressive else gr.update(),
            gr.update(visible=not autoregressive),
        )

    def strategy_changed(strategy: str):
        spec = STRATEGIES.get(strategy)
        show_threshold = strategy == "threshold"
        show_factor = strategy == "factor"
        show_eps = strategy in DREAM_STRATEGIES
        show_order = bool(spec and spec.ranked)
        adaptive = bool(spec and not spec.exact_steps)
        steps_info = (
            "The most steps it may take: this strategy stops early once every token is written."
            if adaptive
            else "Denoising steps (model calls). Fewer steps = more tokens written per step."
        )
        return (
            gr.update(visible=not (spec and spec.one_per_step), info=steps_info),
            gr.update(visible=show_threshold),
            gr.update(visible=show_factor),
            gr.update(visible=show_eps),
            gr.update(visible=show_order),
            gr.update(visible=not (show_threshold or show_factor or show_eps or show_order)),
            gr.update(visible=bool(spec and spec.allows_remask)),
            gr.update(open=show_threshold or show_factor),  # its key setting in view (e.g. after an example)
        )

    def remask_changed(mode: str):
        return gr.update(open=mode not in (None, "", "off"))

    def pick_toggled(session: Session, on: bool):
        view = session.view
        text = _selection_text(view, session.selected) if view is not None and view.states else "No tokens picked yet."
        return gr.update(visible=bool(on)), text

    return {
        "generate": generate,
        "step": step,
        "resume": resume,
        "stop": stop,
        "exports": exports,
        "scrub": scrub,
        "token_clicked": token_clicked,
        "clear_pick": clear_pick,
        "rewrite": rewrite,
        "play": play,
        "upload": upload,
        "model_changed": model_changed,
        "strategy_changed": strategy_changed,
        "pick_toggled": pick_toggled,
        "remask_changed": remask_changed,
        "end_pick": end_pick,
    }


def _selection_text(view: RunView | None, selected: set[int]) -> str:
    if not selected or view is None:
        return "No tokens picked yet: click written tokens in the canvas."
    words = ", ".join(f"`{view.token_text(view.final.tokens[i]).strip() or '␣'}`" for i in sorted(selected)[:12])
    more = "…" if len(selected) > 12 else ""
    return f"{len(selected)} picked: {html.escape(words)}{more}"


SUPERSEDE_AGE = 0.3  # seconds


def supersede(session: Session) -> None:
    """Generate was clicked: stop this tab's running run now, before the new one is even queued.

    Only a run older than ``SUPERSEDE_AGE`` is stopped: this unqueued listener and the queued one
    that starts the new run fire on the same click, and the new run (a few ms old if it won the
    race) must survive. A quick double click is still handled: the new run's ``Session.start``
    supersedes the old one either way."""
    run = session.run if isinstance(session, Session) else None
    if run is not None and time.monotonic() - run.created > SUPERSEDE_AGE:
        run.cancel()


def wire_canvas_tab(ui: UI, state: gr.State) -> None:
    """Connect the events of the Canvas tab.

    Concurrency: everything that runs the model (Generate, Step, Continue, Re-write) shares the
    concurrency group "inference" with limit 2: torch runs one thread per run (``configure_torch``),
    so two runs use a 2-core machine fully and a third waits in the queue instead of slowing
    everyone down. Cheap events (scrub, click, play, upload) get their own higher limits so they
    never wait behind a long run. Stop, and the click that supersedes a running Generate, are not
    queued at all: they must act immediately.
    """
    h = make_handlers(ui)
    settings = [getattr(ui, name) for name in SETTINGS]
    outputs = _run_outputs(ui)
    inference = {"concurrency_limit": INFERENCE_CONCURRENCY, "concurrency_id": "inference"}

    # A second Generate while one runs (trigger_mode="multiple" lets the click through): the unqueued
    # `supersede` stops this tab's current run at once, even when the queue is busy; the new run then
    # starts, and the old stream ends at its next wake-up (it is no longer the session's run).
    ui.generate.click(supersede, [state], None, queue=False, show_progress="hidden", api_visibility="private")
    generate_event = ui.generate.click(
        h["generate"],
        [state, *settings],
        outputs,
        api_name="generate",
        trigger_mode="multiple",
        show_progress="hidden",
        **inference,
    )
    ui.step.click(
        h["step"],
        [state, *settings],
        outputs,
        api_name="step",
        show_progress="hidden",
        **inference,
    )
    resume_event = ui.resume.click(
        h["resume"], [state], outputs, api_name="continue", show_progress="hidden", **inference
    )
    rewrite_event = ui.rewrite.click(
        h["rewrite"],
        [state, *settings],
        [*outputs, ui.prompt],
        api_name="rewrite",
        show_progress="hidden",
        **inference,
    )
    rewrite_event.then(h["end_pick"], None, [ui.pick, ui.pick_row], show_progress="hidden", api_visibility="private")
    play_event = ui.play.click(
        h["play"],
        [state],
        [ui.canvas, ui.scrub, ui.stats],
        api_name="play",
        show_progress="hidden",
        concurrency_limit=8,
    )
    ui.stop.click(
        h["stop"],
        [state],
        outputs,
        api_name="stop",
        queue=False,
        show_progress="hidden",
        cancels=[generate_event, resume_event, rewrite_event, play_event],
    ).then(h["exports"], [state], [ui.download_json, ui.download_html], show_progress="hidden", concurrency_limit=2)
    ui.scrub.input(
        h["scrub"],
        [state, ui.scrub],
        [ui.canvas, ui.stats, ui.inspector],
        api_name="scrub",
        trigger_mode="always_last",
        show_progress="hidden",
        concurrency_limit=8,
    )
    ui.scrub.change(None, [ui.scrub], None, js=CURSOR_JS)  # heatmap cursor: browser only
    ui.canvas.token(
        h["token_clicked"],
        [state, ui.pick],
        [ui.inspector, ui.canvas, ui.selection],
        api_visibility="private",
        show_progress="hidden",
        concurrency_limit=8,
    )
    ui.clear_pick.click(
        h["clear_pick"], [state], [ui.selection, ui.canvas], show_progress="hidden", api_visibility="private"
    )
    ui.pick.change(
        h["pick_toggled"],
        [state, ui.pick],
        [ui.pick_row, ui.selection],
        queue=False,
        show_progress="hidden",
        api_visibility="private",
    )
    ui.projector.change(None, [ui.projector], None, js=PROJECTOR_JS)
    ui.upload.upload(h["upload"], [state, ui.upload], [*outputs, ui.prompt], api_name="replay", concurrency_limit=2)
    ui.model.change(
        h["model_changed"],
        [ui.model, ui.strategy],
        [ui.model_note, ui.strategy, ui.cfg_box],
        api_visibility="private",
        concurrency_limit=2,
    )
    ui.strategy.change(
        h["strategy_changed"],
        [ui.strategy],
        [
            ui.steps,
            ui.threshold,
            ui.factor,
            ui.eps,
            ui.order_temperature,
            ui.no_strategy_settings,
            ui.remask_box,
            ui.strategy_box,
        ],
        queue=False,
        show_progress="hidden",
        api_visibility="private",
    )
    ui.remask.change(
        h["remask_changed"], [ui.remask], [ui.remask_box], queue=False, show_progress="hidden", api_visibility="private"
    )


# --------------------------------------------------------------------------------------------------
# The Race tab: AR twin vs diffusion, or diffusion strategies side by side (dlm_core.race)
# --------------------------------------------------------------------------------------------------

RACE_LANES = 4
RACE_STRATEGIES = ("left_to_right", "low_confidence", "random", "threshold")
RACE_FRAME_SECONDS = 0.1  # at most ~10 canvas updates a second per race: the eye needs no more
BENCH_JSON = ASSETS / "bench.json"


def race_lanes(mode: str, prompt: str, length: int, cache: str, threshold: float, temperature: float, seed: int):
    """The contestants: (lane, note) for the chosen mode; models through the registry like the Canvas tab."""
    block = min(32, length)
    diffusion, note = get_model(default_model_key())
    common = {"gen_length": length, "temperature": temperature, "top_p": 0.95 if temperature > 0 else None, "seed": seed}
    threshold_config = SamplerConfig(
        **common, steps=length, block_length=block, strategy="threshold", threshold=threshold,
        cache=None if cache == "off" else cache,
    )
    if mode == "ar":
        if diffusion.name == registry.load_model(FALLBACK_MODEL).name:
            from dlm_core.models import tiny_random_model

            ar, ar_note = tiny_random_model(causal=True), ""  # the untrained pair, for tests and toys
        else:
            ar, ar_note = get_model("canvas-ar")
        cache_text = {"off": "no cache", "prefix": "prefix cache", "dual": "dual cache"}[cache]
        lanes = [
            Lane("Autoregressive twin · one token per forward pass (KV cache)", ar, prompt,
                 SamplerConfig(**common, strategy="left_to_right")),
            Lane(f"Diffusion · confidence threshold {threshold:g}, blocks of {block}, {cache_text}", diffusion, prompt,
                 threshold_config),
        ]
        return lanes, note or ar_note
    lanes = []
    for name in RACE_STRATEGIES:
        if name == "threshold":
            config = threshold_config
        else:
            config = SamplerConfig(**common, steps=length, block_length=None, strategy=name)
        lanes.append(Lane(f"{STRATEGY_LABELS.get(name, name)} · {name}", diffusion, prompt, config))
    return lanes, note


def race_lane_html(lane: Lane, view: RunView, lane_state: LaneState, finish_rank: int | None) -> str:
    """A lane's header (label, own compute time, NFE, tokens/s, finishing place) and its live canvas."""
    state = lane_state.state
    written = int((~state.fixed).sum() - state.masked.sum())
    seconds = lane_state.seconds
    rate = written / seconds if seconds > 0 else 0.0
    place = ""
    if finish_rank is not None:
        place = f'<span class="dc-badge done">{"finished first" if finish_rank == 0 else f"finished #{finish_rank + 1}"}</span> '
    stats = (
        f"{seconds:.2f} s · {state.nfe} forward passes · {written} tokens · "
        f"{written / state.nfe if state.nfe else 0:.2f} tokens per pass · {rate:.0f} tokens/s"
    )
    canvas = canvas_html(view, titles=False)
    return (
        f'<div class="dc-race-lane"><div class="dc-race-head">{place}<b>{html.escape(lane.label)}</b></div>'
        f'<div class="dc-race-stats">{html.escape(stats)}</div>{canvas}</div>'
    )


def bench_figure(rows: list[dict], title: str) -> dict:
    """Median wall time vs generation length, one line per method (log-log)."""
    methods: dict[str, list[tuple[int, float]]] = {}
    for row in rows:
        methods.setdefault(row["method"], []).append((row["length"], row["median_s"]))
    data = [
        {"type": "scatter", "mode": "lines+markers", "name": method, "x": [p[0] for p in points],
         "y": [p[1] for p in points], "hovertemplate": "%{x} tokens: %{y:.2f} s<extra>" + html.escape(method) + "</extra>"}
        for method, points in methods.items()
    ]
    layout = {
        "title": {"text": title, "font": {"size": 14}},
        "xaxis": {"title": {"text": "generated tokens"}, "type": "log"},
        "yaxis": {"title": {"text": "seconds (median)"}, "type": "log"},
        "margin": {"l": 60, "r": 10, "t": 40, "b": 50},
        "height": 340,
        "legend": {"orientation": "h", "y": -0.25},
        "paper_bgcolor": "rgba(0,0,0,0)",
        "plot_bgcolor": "rgba(0,0,0,0)",
    }
    return {"data": data, "layout": layout}


def stored_bench_plot() -> PlotData | None:
    if not BENCH_JSON.is_file():
        return None
    report = json.loads(BENCH_JSON.read_text(encoding="utf-8"))
    return plot(bench_figure(report["rows"], f"Measured by python -m dlm_core.bench on {report['machine']}"))


def build_race_tab() -> dict[str, Any]:
    c: dict[str, Any] = {}
    gr.Markdown(
        "### Which writes faster: one token at a time, or many at once?\n"
        "The **autoregressive twin** (same size, same data) writes one token per pass through the network. "
        "The **diffusion model** may commit several tokens per pass when it is confident enough, and a "
        "**cache** lets it skip recomputing text that has not changed. Both run on this machine in turns, "
        "each timed on its own clock, so the lane that finishes first is the one that would finish first alone."
    )
    with gr.Row():
        c["prompt"] = gr.Textbox("ROMEO:\n", label="Prompt", lines=2, max_lines=6, scale=3,
                                 info="Both contestants continue this text.")
        c["mode"] = gr.Radio(
            [("Autoregressive twin vs diffusion", "ar"), ("Four diffusion strategies", "strategies")],
            value="ar", label="What races", scale=2,
            info="Strategies mode shows the different unmasking orders side by side.",
        )
    with gr.Row():
        c["length"] = _field(gr.Slider, "race-length", 16, 512, value=128, step=16, label="Length",
                             info="Tokens each contestant writes.")
        c["threshold"] = _field(gr.Slider, "race-threshold", 0.05, 1.0, value=0.5, step=0.05, label="Threshold",
                                   info="Diffusion commits every token it is at least this sure of (at least one per pass).")
        c["cache"] = gr.Radio(CACHE_CHOICES, value="dual", label="Diffusion cache",
                              info="Reuse the network's work on unchanged text (approximate; refreshed every block).")
        c["temperature"] = _field(gr.Slider, "race-temperature", 0.0, 2.0, value=1.0, step=0.1, label="Temperature",
                                     info="0 = always the likeliest token; higher = more varied text.")
        c["seed"] = _field(gr.Number, "race-seed", 0, precision=0, minimum=0, maximum=MAX_SEED, label="Seed",
                           info="Same seed, same race.")
    with gr.Row():
        c["go"] = gr.Button("Start the race", variant="primary")
        c["stop"] = gr.Button("Stop")
    c["note"] = gr.HTML("")
    c["lanes"] = []
    c["heats"] = []
    with gr.Row(equal_height=False):
        for index in range(RACE_LANES):
            with gr.Column(visible=index < 2, min_width=280) as column:
                lane = gr.HTML(empty_canvas_html("Press “Start the race”."))
                heat = gr.Plot(visible=False, show_label=False)
            c["lanes"].append((column, lane))
            c["heats"].append(heat)
    with gr.Accordion("Time vs generation length", open=True):
        c["bench_plot"] = gr.Plot(stored_bench_plot(), show_label=False)
        with gr.Row():
            c["measure"] = gr.Button("Measure here (AR twin vs diffusion, 32-128 tokens)")
        c["bench_note"] = gr.Markdown(
            "The stored figure comes from `python -m dlm_core.bench` (README); "
            "“Measure here” times both on this machine now (about half a minute)."
            if BENCH_JSON.is_file()
            else "No stored benchmark yet: press “Measure here” to time both on this machine now."
        )
    return c


def wire_race_tab(c: dict[str, Any]) -> None:
    columns = [column for column, _ in c["lanes"]]
    lane_html = [lane for _, lane in c["lanes"]]

    @guarded
    def start(prompt, mode, length, threshold, cache, temperature, seed):
        if not isinstance(prompt, str) or len(prompt) > MAX_PROMPT_CHARS:
            raise user_error("prompt", f"must be text of at most {MAX_PROMPT_CHARS} characters")
        lanes, note = race_lanes(mode, prompt, int(length), cache, float(threshold), float(temperature), int(seed or 0))
        views = [RunView.for_model(lane.model, lane.prompt, lane.config, label=lane.label) for lane in lanes]
        snapshots = race(lanes)
        finish: list[int] = []
        last_sent = 0.0
        visible_updates = [gr.update(visible=i < len(lanes)) for i in range(RACE_LANES)]
        hidden_heats = [gr.update(visible=False) for _ in range(RACE_LANES)]
        started = time.monotonic()
        for snapshot in snapshots:
            for index, (view, lane_state) in enumerate(zip(views, snapshot, strict=True)):
                if lane_state.state.step == len(view.states):
                    view.add(lane_state.state)
                if lane_state.done and index not in finish:
                    finish.append(index)
                    view.status = "done"
            if time.monotonic() - started > MAX_RUN_SECONDS:
                raise user_error("length", f"the race took longer than the {MAX_RUN_SECONDS:g} s limit per run; try fewer tokens")
            now = time.monotonic()
            if now - last_sent >= RACE_FRAME_SECONDS or len(finish) == len(lanes):
                last_sent = now
                htmls = [
                    race_lane_html(lane, view, lane_state, finish.index(i) if i in finish else None)
                    for i, (lane, view, lane_state) in enumerate(zip(lanes, views, snapshot, strict=True))
                ]
                htmls += [gr.update() for _ in range(RACE_LANES - len(lanes))]
                yield [model_note_html(lanes[-1].model, note) if note else "", *visible_updates, *htmls, *hidden_heats]
        heats = [gr.update(value=plot(heatmap_dict(view)), visible=True) for view in views]
        heats += [gr.update(visible=False) for _ in range(RACE_LANES - len(views))]
        yield [gr.update(), *[gr.update() for _ in columns], *[gr.update() for _ in lane_html], *heats]

    @guarded
    def measure():
        from dlm_core.bench import run_method

        ar, _ = get_model("canvas-ar")
        diffusion, note = get_model(default_model_key())
        if note:
            raise user_error("model", "the built-in models are not trained yet, so there is nothing meaningful to time")

        class Settings:  # the benchmark's own defaults, one run per length
            block, threshold, temperature, seed = 32, 0.5, 0.0, 0

        rows = []
        for length in (32, 64, 128):
            for method in ("ar+kv", "thr+dual"):
                _, seconds = run_method(method, ar, diffusion, "ROMEO:\n", length, Settings)
                rows.append({"length": length, "method": method, "median_s": seconds})
        return plot(bench_figure(rows, "Measured here just now (one run per point)")), "Measured on this machine just now."

    inputs = [c["prompt"], c["mode"], c["length"], c["threshold"], c["cache"], c["temperature"], c["seed"]]
    outputs = [c["note"], *columns, *lane_html, *c["heats"]]
    event = c["go"].click(
        start, inputs, outputs, api_name="race", concurrency_limit=INFERENCE_CONCURRENCY, concurrency_id="inference"
    )
    c["stop"].click(None, None, None, cancels=[event])
    c["measure"].click(measure, None, [c["bench_plot"], c["bench_note"]], api_name="measure",
                       concurrency_limit=INFERENCE_CONCURRENCY, concurrency_id="inference")


def build_demo() -> gr.Blocks:
    """The app (importable without launching; HF Spaces runs ``python app.py``)."""
    configure_torch()
    ui = UI()
    with gr.Blocks(title="Diffusion Canvas", delete_cache=(3600, 7200)) as demo:
        state = gr.State(new_session, delete_callback=close_session)
        gr.Markdown(
            "# Diffusion Canvas\nWatch a diffusion language model write: it starts from a row of masks "
            "(blanks) and fills them in over several steps, the ones it is surest about first.",
            elem_id="dc-title",
        )
        with gr.Tabs():
            with gr.Tab("Canvas", id="canvas"), gr.Column(elem_id="dc-root"):
                build_canvas_tab(ui)
            with gr.Tab("Race", id="race"):
                race_tab = build_race_tab()
            with gr.Tab("How it works", id="how"):
                build_howto_tab()
        wire_canvas_tab(ui, state)
        wire_race_tab(race_tab)
        demo.unload(on_unload)
    # The queue: at most 64 waiting events (then "queue full" instead of unbounded waiting), and a
    # default of 2 concurrent runs per event for a 2-core CPU; see wire_canvas_tab for the groups.
    demo.queue(max_size=QUEUE_MAX_SIZE, default_concurrency_limit=INFERENCE_CONCURRENCY)
    return demo


def launch_kwargs() -> dict[str, Any]:
    """Styling and limits for ``launch`` (gradio 6 takes css / theme / head there)."""
    return {
        "css": canvas_css() + "\n" + (ASSETS / "style.css").read_text(encoding="utf-8"),
        "theme": gr.themes.Soft(primary_hue="indigo"),
        "max_file_size": MAX_UPLOAD_BYTES,
        "show_error": True,
    }


demo = build_demo()

if __name__ == "__main__":
    port = os.environ.get("GRADIO_SERVER_PORT") or os.environ.get("PORT") or "7860"
    demo.launch(
        server_name=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
        server_port=int(port),
        **launch_kwargs(),
    )
