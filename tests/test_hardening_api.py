"""Hardening, proven over the API: ``python app.py`` in a subprocess (tiny random model), driven by
gradio_client (and raw HTTP where the client would protect us from ourselves).

* every class of bad input to every endpoint gets a clear message naming the field (its label) and
  the allowed range, never a traceback; the server keeps serving good requests meanwhile;
* hostile uploads (not JSON, deep nesting, huge arrays, wrong shapes, 50 MB, path names) are refused
  the same way, and no server-side path can be smuggled in as an "upload";
* a cancelled run (gradio_client ``job.cancel()``) and a run whose browser tab closed stop using CPU
  (measured from ``/proc/<pid>/stat`` of the server process, not from any test-only endpoint);
* ``python app.py`` with no host configured listens on 127.0.0.1 only, and a run over the per-run
  time limit stops with a note saying so.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import threading
import time
from pathlib import Path

import httpx
import pytest
from app_server import (
    API_DEFAULTS,
    OUTPUT,
    app_process,
    canvas_state,
    direct,
    final_text,
    free_port,
    running_app,
)
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError

from dlm_core.models import registry
from dlm_core.sampler import SamplerConfig
from dlm_core.trajectory import record

pytestmark = pytest.mark.slow  # servers in subprocesses, driven over HTTP

ROOT = Path(__file__).resolve().parents[1]
DEFAULTS = {**API_DEFAULTS, "gen_length": 12, "steps": 6}
LONG = {"gen_length": 500, "steps": 500}
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"]
TIMEOUT = 60_000  # ms  # ~5-10 s of CPU for the tiny model: long enough to cancel


# -- helpers ------------------------------------------------------------------------------------------


def settings(**changes) -> dict:
    return {**DEFAULTS, **changes}


def client(url: str) -> Client:
    return Client(url, download_files=False, verbose=False)


def server_pid(url: str) -> int:
    """The pid of the ``python app.py`` serving ``url`` (found by its GRADIO_SERVER_PORT)."""
    marker = f"GRADIO_SERVER_PORT={url.rsplit(':', 1)[1]}".encode()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            command = Path(f"/proc/{entry}/cmdline").read_bytes()
            environment = Path(f"/proc/{entry}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"app.py" in command and marker in environment:
            return int(entry)
    raise AssertionError(f"no app.py process serves {url}")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of every thread of ``pid`` so far (fields 14 and 15 of /proc/pid/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_rate(pid: int, seconds: float) -> float:
    """CPU seconds the process used per wall second over the next ``seconds``."""
    before, started = cpu_seconds(pid), time.monotonic()
    time.sleep(seconds)
    return (cpu_seconds(pid) - before) / (time.monotonic() - started)


def assert_clear(message: str, field: str, *needles: str) -> None:
    """A user-facing message: starts with the field's label, says what is allowed, no traceback."""
    assert message.lower().startswith(field.lower()), message
    for needle in needles:
        assert needle in message, (needle, message)
    assert "Traceback" not in message and 'File "' not in message and "Error:" not in message, message
    assert len(message) < 1000, message


def good_run(url: str, seed: int = 5) -> None:
    """A normal request on a fresh session: succeeds and matches the engine run alone."""
    job = client(url).submit(**settings(seed=seed, temperature=0.7), api_name="/generate")
    job.result(timeout=60)
    assert final_text(job.outputs()) == direct("ROMEO:\n", gen_length=12, steps=6, seed=seed, temperature=0.7)


@pytest.fixture(scope="module")
def url():
    with running_app(model="tiny-random", name="hardening") as base:
        yield base


@pytest.fixture(scope="module")
def api(url):
    return client(url)


# -- bad input, every class, through the API -------------------------------------------------------------

BAD_GENERATE = [
    # out of range
    ({"steps": 0}, "Steps", "[1, 512]"),
    ({"gen_length": 513}, "Length", "[0, 512]"),
    ({"block_length": -1}, "Block length", "[0, 512]"),
    ({"temperature": 1e308}, "Temperature", "[0, 2]"),
    ({"top_k": -3}, "Top-k", "[0, 200]"),
    ({"top_p": 1.5}, "Top-p", "[0.05, 1]"),
    ({"seed": -1}, "Seed", "[0, 9223372036854775807]"),
    ({"seed": 2**70}, "Seed", "[0, 9223372036854775807]"),
    ({"threshold": 0}, "Threshold", "[0.05, 1]"),
    ({"factor": 11}, "Factor", "[0.1, 10]"),
    ({"eps": 0.9}, "Eps", "[0.0001, 0.5]"),
    ({"order_temperature": 1.5}, "Order randomness", "[0, 1]"),
    ({"order_temperature": "nan"}, "Order randomness", "a number in [0, 1]"),
    ({"eta": 2}, "Re-masking strength (eta)", "[0, 1]"),
    ({"cfg_scale": 6}, "Guidance (CFG)", "[0, 5]"),
    # wrong types, NaN, infinity
    ({"steps": "abc"}, "Steps", "an integer in [1, 512]"),
    ({"steps": None}, "Steps", "an integer in [1, 512]"),
    ({"steps": [1]}, "Steps", "an integer in [1, 512]"),
    ({"steps": 2.5}, "Steps", "an integer in [1, 512]"),
    ({"gen_length": True}, "Length", "an integer in [0, 512]"),
    ({"temperature": "nan"}, "Temperature", "a number in [0, 2]"),
    ({"temperature": "-inf"}, "Temperature", "a number in [0, 2]"),
    ({"top_k": {"k": 1}}, "Top-k", "an integer in [0, 200]"),
    ({"seed": "1; DROP TABLE"}, "Seed", "an integer in [0,"),
    ({"remask": 5}, "Re-masking", "off, cap, rescale, confidence"),
    ({"strategy": 3}, "Strategy", "low_confidence"),
    ({"model": 123}, "Model", "model name (text)"),
    ({"model": ["tiny-random"]}, "Model", "model name (text)"),
    # unknown names
    ({"strategy": "fastest"}, "Strategy", "low_confidence"),
    ({"remask": "bogus"}, "Re-masking", "cap"),
    ({"cache": "warp"}, "KV cache", "prefix"),
    ({"model": "no-such-model"}, "Model", "Valid names"),
    ({"model": "mlm:../../etc"}, "Model", "local paths are not accepted"),
    ({"model": "mlm:/etc/passwd"}, "Model", "local paths are not accepted"),
    ({"model": "mlm:assets"}, "Model", "local paths are not accepted"),
    # prompts: empty, whitespace, too long, malformed placeholders
    ({"prompt": ""}, "Prompt", "non-whitespace"),
    ({"prompt": " \n\t\u3000 "}, "Prompt", "non-whitespace"),
    ({"prompt": "x" * 20_001}, "Prompt", "at most 20000 characters"),
    ({"prompt": "x" * 600}, "Prompt", "max_length 512"),
    ({"prompt": "x" * 505, "gen_length": 12}, "Length", "[0, 7]"),
    ({"prompt": "Only blanks", "gen_length": 0}, "Length", "[1,"),
    ({"prompt": "To be [MASK:x] or"}, "Prompt", "[MASK:n]"),
    ({"prompt": "To be [MASK:0] or"}, "Prompt", "[1, 2048]"),
    ({"prompt": "To be [MASK:99999999999999] or"}, "Prompt", "[1, 2048]"),
    ({"prompt": "To be [MASK:3 or"}, "Prompt", "never closed"),
    ({"prompt": "To be [MASKED] or"}, "Prompt", "[MASK:n]"),
    ({"prompt": "[MASK:-1]"}, "Prompt", "[MASK:n]"),
    # cross-field rules
    ({"cache": "prefix", "cfg_scale": 1.0}, "KV cache", "cfg_scale"),
    ({"remask": "cap", "remask_t_on": 0.2, "remask_t_off": 0.5}, "Re-mask until t", "remask_t_on"),
]


@pytest.mark.parametrize(("changes", "field", "allowed"), BAD_GENERATE, ids=lambda v: str(v)[:40])
def test_bad_generate_input_names_the_field_and_range(api, changes, field, allowed):
    with pytest.raises(AppError) as info:
        api.predict(**settings(**changes), api_name="/generate")
    assert_clear(str(info.value), field, allowed)


def test_other_endpoints_refuse_bad_input_clearly(api, url):
    for changes, field, allowed in (({"steps": -4}, "Steps", "[1, 512]"), ({"prompt": "[MASK:"}, "Prompt", "[MASK]")):
        with pytest.raises(AppError) as info:
            api.predict(**settings(**changes), api_name="/step")
        assert_clear(str(info.value), field, allowed)
    with pytest.raises(AppError) as info:
        client(url).predict(**settings(), api_name="/rewrite")  # a fresh session: nothing to re-write
    assert_clear(str(info.value), "Picked tokens", "run the model first")
    for value in ("abc", -5, None, 1e308):
        with pytest.raises(AppError) as info:
            api.predict(value, api_name="/scrub")
        assert_clear(str(info.value), "Step shown", "an integer in [0,")
    # Endpoints with nothing to do on a fresh session answer without an error.
    fresh = client(url)
    for endpoint in ("/stop", "/exports", "/continue", "/play"):
        fresh.predict(api_name=endpoint)


def test_errors_are_plain_text_for_api_clients(api, url):
    """An API client reads "must be < remask_t_on", not "&lt;"; only the app's page (which sends
    ``x-gradio-user: app`` and renders the toast as HTML) gets escaped text. Unit level:
    ``tests/test_errors_text.py``."""
    bad = settings(remask="cap", remask_t_on=0.2, remask_t_off=0.5)
    plain, escaped = "must be < remask_t_on (0.2), got 0.5", "must be &lt; remask_t_on (0.2), got 0.5"
    with pytest.raises(AppError) as info:  # gradio_client (sends x-gradio-user: api)
        api.predict(**bad, api_name="/generate")
    assert plain in str(info.value) and "&lt;" not in str(info.value), str(info.value)
    with pytest.raises(AppError) as info:  # the client's own text comes back exactly as sent
        api.predict(**settings(strategy="<b>&amp;"), api_name="/generate")
    assert str(info.value).endswith("got '<b>&amp;'"), str(info.value)
    with pytest.raises(AppError) as info:  # the same request as the app's page sends it
        Client(url, download_files=False, verbose=False, headers={"x-gradio-user": "app"}).predict(
            **bad, api_name="/generate"
        )
    assert escaped in str(info.value), str(info.value)
    # A bare HTTP client (curl): POST /gradio_api/call/generate with the parameters in the API's order.
    names = [p["parameter_name"] for p in api.view_api(print_info=False, return_format="dict")["named_endpoints"]["/generate"]["parameters"]]
    body = _raw_call(url, "generate", [bad[name] for name in names])
    assert "event: error" in body and plain in body and "&lt;" not in body, body


def test_server_keeps_serving_while_bad_input_arrives(url):
    """Bad requests from eight sessions at once while a good one runs: the good one is unaffected."""
    errors: list[str] = []

    def hammer(index: int) -> None:
        bad = client(url)
        for changes, _, _ in BAD_GENERATE[index::8]:
            try:
                bad.predict(**settings(**changes), api_name="/generate")
                errors.append(f"accepted {changes}")
            except AppError as error:
                if "Traceback" in str(error):
                    errors.append(str(error))

    threads = [threading.Thread(target=hammer, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    good_run(url, seed=11)
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads)
    assert errors == []
    good_run(url, seed=12)


# -- hostile uploads -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def trajectory_text() -> str:
    return record(registry.load_model("tiny-random"), "AB\n", SamplerConfig(gen_length=6, steps=3)).to_json()


def _mutate(text: str, **top) -> str:
    data = json.loads(text)
    data.update(top)
    return json.dumps(data)


def _bad_uploads(good: str) -> list[tuple[str, bytes, str]]:
    data = json.loads(good)
    wrong_shape = json.loads(good)
    wrong_shape["steps"][0]["confidence"] = wrong_shape["steps"][0]["confidence"] + [0.5]
    return [
        ("not-json", b"this is not JSON {", "not valid JSON"),
        ("empty", b"", "not valid JSON"),
        ("binary", b"\xff\xfe\x00\x01", "not UTF-8"),
        ("pickle", b"\x80\x04\x95\x05\x00\x00\x00\x00\x00\x00\x00K\x01.", "not UTF-8"),
        ("nan", good.replace('"elapsed":', '"elapsed":NaN,"x":', 1).encode(), "NaN is not allowed"),
        (
            "duplicate-keys",
            good.replace('{"schema_version"', '{"prompt":"x","schema_version"', 1).encode(),
            "duplicate",
        ),
        ("top-level-list", b"[1, 2, 3]", "document: must be an object"),
        ("wrong-version", _mutate(good, schema_version="diffusion-canvas/trajectory/99").encode(), "schema_version"),
        ("wrong-type", _mutate(good, prompt_length="3").encode(), "prompt_length"),
        ("huge-array", _mutate(good, initial_tokens=[0] * 5000).encode(), "the limit is 4096"),
        ("huge-steps", _mutate(good, steps=[data["steps"][0]] * 2049).encode(), "the limit is 2048"),
        ("wrong-shape", json.dumps(wrong_shape).encode(), "steps[0].confidence"),
        ("deep-nesting", b"[" * 200_000 + b"]" * 200_000, "not valid JSON"),
        ("many-containers", b"[" + b"[]," * 1_100_000 + b"[]]", "the limit is 1000000"),
        ("deep-object", b'{"a":' * 100_000 + b"1" + b"}" * 100_000, "not valid JSON"),
    ]


def test_hostile_uploads_are_refused_clearly(url, trajectory_text, tmp_path):
    api = client(url)
    for name, content, needle in _bad_uploads(trajectory_text):
        path = tmp_path / f"{name}.json"
        path.write_bytes(content)
        started = time.monotonic()
        with pytest.raises(AppError) as info:
            api.predict(handle_file(str(path)), api_name="/replay")
        message = str(info.value)
        assert_clear(message, "Trajectory file", needle)
        assert time.monotonic() - started < 30, name
    good = tmp_path / "good.json"
    good.write_text(trajectory_text, encoding="utf-8")
    replay = api.predict(handle_file(str(good)), api_name="/replay")
    assert canvas_state(replay[OUTPUT["canvas"]]) == (3, "replay")


def test_upload_size_limit_is_enforced_by_client_and_server(url, tmp_path):
    big = tmp_path / "big.json"
    with open(big, "wb") as handle:
        handle.truncate(50 * 1024 * 1024)  # 50 MB (sparse: instant)
    with pytest.raises(ValueError, match="exceeds the maximum file size of 20971520 bytes"):
        client(url).predict(handle_file(str(big)), api_name="/replay")
    # A script that skips the client's check gets HTTP 413 before the app reads anything.
    with open(big, "rb") as handle:
        response = httpx.post(f"{url}/gradio_api/upload", files={"files": ("big.json", handle)}, timeout=120)
    assert response.status_code == 413
    assert "maximum allowed size of 20971520 bytes" in response.text
    good_run(url, seed=13)


def _raw_call(url: str, endpoint: str, data: list) -> str:
    """POST /gradio_api/call/<endpoint> without gradio_client (which would upload local paths itself)."""
    event = httpx.post(f"{url}/gradio_api/call/{endpoint}", json={"data": data}, timeout=30).json()["event_id"]
    with httpx.stream("GET", f"{url}/gradio_api/call/{endpoint}/{event}", timeout=60) as stream:
        return "".join(stream.iter_text())


def test_no_server_path_can_be_passed_as_an_upload(url, trajectory_text):
    secret_dir = Path(tempfile.mkdtemp(prefix="dc-secret-", dir=ROOT / "test-artifacts"))
    secret = secret_dir / "secret.json"
    secret.write_text(trajectory_text, encoding="utf-8")  # a valid trajectory: it would replay if read
    upload_root = Path(tempfile.gettempdir()) / "gradio"
    try:
        for path in (
            str(secret),
            f"{upload_root}/../../{secret.relative_to('/')}",
            "../" * 12 + str(secret.relative_to("/")),
            "/etc/passwd",
        ):
            body = _raw_call(url, "replay", [{"path": path, "meta": {"_type": "gradio.FileData"}}])
            assert "event: error" in body and "event: complete" not in body, body
            assert "not uploaded by a user" in body or "Invalid file type" in body, body
            assert "ROMEO" not in body and "root:" not in body
    finally:
        secret.unlink()
        secret_dir.rmdir()


def test_upload_file_names_are_never_paths(url, trajectory_text):
    """A multipart upload named ``../../etc/passwd.json`` lands in gradio's cache under its base name;
    the app reads it by content and shows only that name (escaped)."""
    hostile = '../../etc/"><img src=x onerror=alert(1)>passwd.json'
    response = httpx.post(
        f"{url}/gradio_api/upload",
        files={"files": (hostile, trajectory_text.encode(), "application/json")},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    (stored,) = response.json()
    stored_path = Path(stored)
    assert ".." not in stored_path.parts
    assert stored_path.resolve().is_relative_to((Path(tempfile.gettempdir()) / "gradio").resolve())
    body = _raw_call(url, "replay", [{"path": stored, "meta": {"_type": "gradio.FileData"}, "orig_name": hostile}])
    assert "event: complete" in body, body
    outputs = json.loads(body.split("event: complete", 1)[1].split("data:", 1)[1].strip().splitlines()[0])
    canvas = outputs[OUTPUT["canvas"]]
    assert canvas_state(canvas) == (3, "replay")
    assert "<img" not in canvas and "../" not in canvas


# -- cancellation ---------------------------------------------------------------------------------------


def _wait_streaming(job, steps: int = 3, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        states = [canvas_state(out[OUTPUT["canvas"]]) for out in job.outputs()]
        if any(s and s[0] >= steps for s in states):
            return
        time.sleep(0.05)
    raise AssertionError("the run did not start streaming")


@pytest.mark.parametrize("how", ["job.cancel()", "/stop"])
def test_cancelled_or_stopped_run_stops_using_cpu(url, how):
    pid = server_pid(url)
    api = client(url)
    job = api.submit(**settings(**LONG), api_name="/generate")
    _wait_streaming(job)
    busy = cpu_rate(pid, 0.8)
    assert busy > 0.3, f"the server should be busy while the run streams (used {busy:.2f} CPU)"
    if how == "/stop":
        stopped = api.predict(api_name="/stop")  # the Stop button's endpoint, same session
        assert canvas_state(stopped[OUTPUT["canvas"]])[1] == "stopped"
    else:
        job.cancel()
    time.sleep(0.4)  # one step of the tiny model is a few ms; leave room for the cancel to arrive
    idle = cpu_rate(pid, 1.5)
    print(f"server CPU while running {busy:.2f}, after {how} {idle:.2f}")
    assert idle < 0.15, f"the run kept using {idle:.2f} CPU after {how}"
    good_run(url, seed=14)


def test_closed_browser_tab_stops_its_run(url):
    from playwright.sync_api import sync_playwright

    assert CHROMIUM.exists(), f"Chromium is required ({CHROMIUM}); scripts/test.sh installs it"
    pid = server_pid(url)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.goto(url)
            page.wait_for_selector("#dc-generate", timeout=TIMEOUT)
            page.get_by_text("Guidance and speed").click()  # open the accordion holding the CFG slider
            # 500 steps with guidance (two forward passes each): far longer than the measurement below.
            for name, value in (("gen_length", 500), ("steps", 500), ("cfg_scale", 3)):
                box = page.locator(f"#dc-field-{name} input[type=number]")
                box.fill(str(value))
                box.press("Enter")
            page.click("#dc-generate")
            page.wait_for_function(
                "() => { const c = document.querySelector('#dc-canvas .dc-canvas');"
                " return c && c.dataset.status === 'running' && Number(c.dataset.step) >= 3"
                " && c.textContent.includes('of 500'); }",
                timeout=TIMEOUT,
            )
            busy = cpu_rate(pid, 0.8)
            page.close()
            time.sleep(1.0)  # the server notices the closed connections
            idle = cpu_rate(pid, 1.5)
        finally:
            browser.close()
    print(f"server CPU while running {busy:.2f}, after the tab closed {idle:.2f}")
    assert busy > 0.3, f"the server should be busy while the run streams (used {busy:.2f} CPU)"
    assert idle < 0.15, f"the run kept using {idle:.2f} CPU after its tab closed"


# -- a bare `python app.py`: loopback only, and the per-run time limit --------------------------------------


@contextlib.contextmanager
def bare_app(**env: str):
    """``python app.py`` with no GRADIO_SERVER_NAME (the default host), a free port, ``env`` on top."""
    port = free_port()
    environment = {k: v for k, v in os.environ.items() if k not in ("GRADIO_SERVER_NAME", "PORT")}
    environment.update(GRADIO_SERVER_PORT=str(port), GRADIO_ANALYTICS_ENABLED="False", **env)
    with app_process(environment, "bare-app") as (url, pid):
        yield url, port, pid


def listening_addresses(pid: int, port: int) -> set[str]:
    """Local addresses on which ``pid`` has a listening TCP socket on ``port`` (from /proc/net)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            target = os.readlink(fd)
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    found = set()
    for table, width in (("tcp", 8), ("tcp6", 32)):
        for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            parts = line.split()
            address, hex_port = parts[1].split(":")
            if parts[3] != "0A" or int(hex_port, 16) != port or parts[9] not in inodes:  # 0A = LISTEN
                continue
            raw = bytes.fromhex(address)
            if width == 8:
                found.add(".".join(str(b) for b in raw[::-1]))
            else:
                words = [raw[i : i + 4][::-1] for i in range(0, 16, 4)]
                found.add(":".join(b"".join(words)[i : i + 2].hex() for i in range(0, 16, 2)))
    return found


def test_bare_app_listens_on_loopback_only_and_limits_run_time():
    with bare_app(DIFFUSION_CANVAS_MODEL="tiny-random", DIFFUSION_CANVAS_MAX_RUN_SECONDS="1") as (url, port, pid):
        addresses = listening_addresses(pid, port)
        assert addresses == {"127.0.0.1"}, addresses

        # 500 steps with guidance (two forward passes each) take several seconds: the 1 s limit stops it.
        api = client(url)
        started = time.monotonic()
        job = api.submit(**settings(**LONG, cfg_scale=2.0), api_name="/generate")
        job.result(timeout=60)
        elapsed = time.monotonic() - started
        outputs = job.outputs()
        finals = [out[OUTPUT["canvas"]] for out in outputs]
        finals = [canvas for canvas in finals if canvas_state(canvas) and "dc-note" in canvas]
        assert finals, "the stopped run shows a note"
        step, status = canvas_state(finals[-1])
        assert status == "stopped" and 0 < step < 500, (step, status)
        assert "a run may use at most 1 s of model time" in finals[-1]
        assert final_text(outputs).startswith("ROMEO:\n")
        assert elapsed < 20, elapsed
        # A short run is unaffected.
        short = client(url).submit(**settings(seed=3), api_name="/generate")
        short.result(timeout=60)
        assert final_text(short.outputs()) == direct("ROMEO:\n", gen_length=12, steps=6, seed=3)
