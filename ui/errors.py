"""User-facing errors: every message names the field (its label) and says what is allowed; anything
unexpected is logged and shown without a traceback.

Messages are plain text for API clients and HTML-escaped only for the app's own page, where gradio's
toast renders a message as (sanitised) HTML: ``for_client`` decides, per request."""

from __future__ import annotations

import functools
import html
import inspect
import logging
import math
from typing import Any

import gradio as gr
from gradio.context import LocalContext

from dlm_core.models import registry
from dlm_core.sampler import ConfigError, PromptError
from dlm_core.sampler.config import SETTINGS
from dlm_core.trajectory import TrajectoryError
from dlm_core.viz import EditError

log = logging.getLogger("diffusion_canvas")

# The label of every field a message can name: the sampler settings' from the settings table.
FIELD_LABELS = {
    "prompt": "Prompt",
    "model": "Model",
    **{name: spec.label for name, spec in SETTINGS.items()},
    "selection": "Picked tokens",
    "file": "Trajectory file",
}


# The header gradio's own page sends with every event it submits (the Python and JS clients send "api",
# a bare HTTP call to /gradio_api/call/... sends none).
APP_PAGE_HEADER = ("x-gradio-user", "app")


def renders_html() -> bool:
    """Whether the client of the event being handled shows messages as HTML: the app's own page does
    (its toasts render ``gr.Error`` / ``gr.Warning`` / ``gr.Info`` text as HTML); an API client
    (gradio_client, @gradio/client, curl) does not. Outside any request (a direct call from Python)
    the answer is yes, the safe choice for text that may end up in a page."""
    request = LocalContext.request.get(None)
    if request is None:
        return True
    name, value = APP_PAGE_HEADER
    headers = getattr(request, "headers", None) or {}
    return str(headers.get(name, "")).strip().lower() == value


def for_client(text: str) -> str:
    """``text`` as the current client shows it: HTML-escaped for the app's page, unchanged (plain text,
    "must be < remask_t_on") for API clients. Every message raised or shown to a user goes through here."""
    return html.escape(text, quote=False) if renders_html() else text


def user_error(field: str, message: str) -> gr.Error:
    label = FIELD_LABELS.get(field, field)
    text = message if message.lower().startswith(label.lower()) else f"{label}: {message}"
    return gr.Error(for_client(text), title="Please check your input", print_exception=False)


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


def shown_error(error: Exception, where: str) -> gr.Error:
    """``error`` as the user sees it: a known input error names its field; anything else is logged
    (call this inside the ``except`` block, so the log has the traceback) and shown without one."""
    if isinstance(error, gr.Error):
        return error
    if isinstance(error, KNOWN_ERRORS):
        return as_user_error(error)
    log.exception("unexpected error in %s", where)
    return gr.Error(
        for_client(f"Something went wrong ({type(error).__name__}: {error})"), print_exception=False
    )


def guarded(fn):
    """``fn`` (a plain or generator event handler) raising only ``shown_error``s: never a traceback."""
    if inspect.isgeneratorfunction(fn):

        @functools.wraps(fn)
        def generator(*args, **kwargs):
            try:
                yield from fn(*args, **kwargs)
            except Exception as error:  # noqa: BLE001 (the UI must never show a traceback)
                raise shown_error(error, fn.__name__) from None

        return generator

    @functools.wraps(fn)
    def plain(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except Exception as error:  # noqa: BLE001
            raise shown_error(error, fn.__name__) from None

    return plain


# -- reading raw input ---------------------------------------------------------------------------------
# Events that take typed settings are wired with ``preprocess=False``: gradio hands the handler the raw
# JSON values, and ``read_input`` checks each against its widget (label, range, step, choices). gradio's
# own check would say only "Value 0 is less than minimum value 1."; this one names the field and range.


def read_input(component: gr.components.Component, payload: Any) -> Any:
    """``payload`` (raw, from the browser or an API client) as the value ``component`` stands for, or a
    gr.Error naming the field: a Slider or Number gives a number in its range, a Dropdown or Radio one
    of its choices (or any text with ``allow_custom_value``), a Textbox its text."""
    label, low, high = component.label, getattr(component, "minimum", None), getattr(component, "maximum", None)
    if isinstance(component, gr.Slider):
        step = float(component.step or 1)
        return check_number(label, low, high, payload, integer=step.is_integer() and float(low).is_integer())
    if isinstance(component, gr.Number):
        if payload is None:
            raise gr.Error(for_client(f"{label}: a number is required"), print_exception=False)
        return check_number(label, low, high, payload, integer=component.precision == 0)
    if isinstance(component, gr.Dropdown | gr.Radio):
        if getattr(component, "allow_custom_value", False):
            return payload
        allowed = [value for _, value in component.choices]
        if isinstance(payload, bool) or payload not in allowed:
            raise gr.Error(
                for_client(f"{component.label}: must be one of {', '.join(map(str, allowed))}, got {payload!r}"),
                print_exception=False,
            )
        return payload
    if isinstance(component, gr.Textbox):
        return None if payload is None else str(payload)
    raise TypeError(f"read_input does not know {type(component).__name__}")


def check_number(label: str, low: float | None, high: float | None, payload: Any, integer: bool) -> float | int:
    """``payload`` as a number (an integer if ``integer``) in [low, high], or a gr.Error naming the field."""
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
            for_client(f"{label}: must be {kind}{bounds}, got {payload!r}"),
            print_exception=False,
        )
    return int(value) if integer else float(value)

