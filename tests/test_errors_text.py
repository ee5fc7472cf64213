"""Error text for each kind of client: plain for API clients, HTML-escaped only for the app's page.

gradio's toast renders a message as HTML, so the app's own page (which sends ``x-gradio-user: app``
with every event) must get escaped text; gradio_client, @gradio/client (``x-gradio-user: api``) and a
bare HTTP call (no header) show text as text, so entities there would be noise ("must be &lt; 0.2").
The same rule over a real server: ``tests/test_hardening_api.py::test_errors_are_plain_text_for_api_clients``.
"""

from __future__ import annotations

import contextlib
from types import SimpleNamespace

import gradio as gr
import pytest
from gradio.context import LocalContext

from ui import errors

HOSTILE = "<b>bold</b> & <script>x</script>"


@contextlib.contextmanager
def handling(headers: dict[str, str] | None):
    """As if inside an event handler for a request with ``headers`` (None: outside any request)."""
    token = LocalContext.request.set(None if headers is None else SimpleNamespace(headers=headers))
    try:
        yield
    finally:
        LocalContext.request.reset(token)


APP = {"x-gradio-user": "app"}
API_CLIENTS = [{"x-gradio-user": "api"}, {"x-gradio-user": "mcp"}, {}, {"user-agent": "curl/8"}]


def raised(fn, *args) -> str:
    with pytest.raises(gr.Error) as info:
        fn(*args)
    return info.value.message


def every_message() -> list[str]:
    """One message of each kind the app raises, all carrying '<' or '&'."""
    slider = gr.Slider(0, 1, label="Re-mask <from> t")
    dropdown = gr.Dropdown(["a<b", "c&d"], label="Strategy")
    return [
        errors.user_error("remask_t_off", "remask_t_off must be < remask_t_on (0.2), got 0.5").message,
        errors.shown_error(RuntimeError(HOSTILE), "test").message,
        errors.as_user_error(ValueError(HOSTILE)).message,
        raised(errors.read_input, slider, 5),
        raised(errors.read_input, dropdown, HOSTILE),
        raised(errors.check_number, "Steps", 1, 512, HOSTILE, True),
    ]


@pytest.mark.parametrize("headers", API_CLIENTS, ids=["python-or-js-client", "mcp", "bare-http", "curl"])
def test_api_clients_get_plain_text(headers):
    with handling(headers):
        messages = every_message()
        assert errors.for_client(HOSTILE) == HOSTILE
    assert "must be < remask_t_on" in messages[0]
    for message in messages:
        assert "&lt;" not in message and "&amp;" not in message, message
        assert "<" in message or "&" in message, message


@pytest.mark.parametrize("headers", [APP, {"x-gradio-user": " App "}, None], ids=["app-page", "app-spaced", "no-request"])
def test_the_app_page_and_direct_calls_get_escaped_text(headers):
    with handling(headers):
        messages = every_message()
        assert errors.for_client(HOSTILE) == "&lt;b&gt;bold&lt;/b&gt; &amp; &lt;script&gt;x&lt;/script&gt;"
    assert "must be &lt; remask_t_on" in messages[0]
    for message in messages:
        assert "<" not in message, message

