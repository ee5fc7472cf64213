"""The app over its API: ``python app.py`` in a subprocess (tiny random model), driven by gradio_client."""

from __future__ import annotations

import re
import threading
import time

import pytest
from app_server import API_DEFAULTS, OUTPUT, canvas_state, direct, final_text, running_app
from gradio_client import Client
from gradio_client.exceptions import AppError

pytestmark = pytest.mark.slow  # a server in a subprocess, driven over HTTP

DEFAULTS = API_DEFAULTS


@pytest.fixture(scope="module")
def url():
    with running_app(model="tiny-random", name="api") as base:
        yield base


def client(url: str) -> Client:
    return Client(url, download_files=False, verbose=False)


def settings(**changes) -> dict:
    return {**DEFAULTS, **changes}


def test_generate_streams_every_stage_and_matches_a_direct_run(url):
    api = client(url)
    values = settings(prompt="HAMLET:\nTo be, or [MASK:4], that is", gen_length=160, steps=160, temperature=0.7, seed=3)
    started = time.monotonic()
    job = api.submit(**values, api_name="/generate")
    first_update = None
    for _ in job:
        if first_update is None:
            first_update = time.monotonic() - started
    outputs = job.outputs()
    frames = [canvas_state(out[OUTPUT["canvas"]]) for out in outputs]
    frames = [f for f in frames if f is not None]
    assert frames[0] == (0, "running")  # the all-mask canvas comes first
    live = [step for step, status in frames if status == "running" and step > 0]
    assert len(live) >= 2, f"expected intermediate steps to stream, got {frames}"
    assert live == sorted(live)
    assert frames[-1][1] == "done"
    last_step = frames[-1][0]
    assert 0 < live[0] < last_step
    expected = direct(values["prompt"], gen_length=160, steps=160, temperature=0.7, seed=3)
    assert final_text(outputs) == expected
    heatmaps = [out[OUTPUT["heatmap"]] for out in outputs]
    heatmaps = [heatmap for heatmap in heatmaps if isinstance(heatmap, dict) and heatmap.get("plot")]
    assert len(heatmaps) >= 2  # the heatmap grows during the run and is complete at the end
    assert '"bdata"' in heatmaps[-1]["plot"]
    stats = [out[OUTPUT["stats"]] for out in outputs]
    stats = [text for text in stats if isinstance(text, str) and "Forward passes" in text]
    assert stats and "Tokens per second" in stats[-1]
    print(f"first update after {first_update:.3f} s, {len(outputs)} updates")


def test_strategies_and_remasking_match_direct_runs(url):
    api = client(url)
    cases = [
        (
            {"strategy": "threshold", "threshold": 0.5, "gen_length": 24, "steps": 24},
            {"strategy": "threshold", "threshold": 0.5},
        ),
        (
            {
                "remask": "cap",
                "eta": 0.3,
                "temperature": 0.9,
                "seed": 7,
                "gen_length": 24,
                "steps": 24,
                "block_length": 12,
            },
            {"remask": "cap", "eta": 0.3, "temperature": 0.9, "seed": 7, "block_length": 12},
        ),
        ({"cache": "dual", "block_length": 8, "gen_length": 24, "steps": 24}, {"cache": "dual", "block_length": 8}),
        (  # a canvas of random tokens (uniform-state decoding)
            {"noise": "uniform", "temperature": 0.8, "final_temperature": 0.4, "gamma": 0.5, "seed": 5,
             "gen_length": 24, "steps": 24},
            {"noise": "uniform", "temperature": 0.8, "final_temperature": 0.4, "gamma": 0.5, "seed": 5},
        ),
    ]
    for ui, config in cases:
        job = api.submit(**settings(**ui), api_name="/generate")
        job.result()
        expected = direct(DEFAULTS["prompt"], gen_length=24, steps=24, **config)
        assert final_text(job.outputs()) == expected


@pytest.mark.parametrize(
    ("changes", "field", "allowed"),
    [
        ({"steps": 0}, "Steps", "[1, 512]"),
        ({"gen_length": 100000}, "Length", "[0, 512]"),
        ({"temperature": -1}, "Temperature", "[0, 2]"),
        ({"prompt": "   "}, "Prompt", "non-whitespace"),
        ({"prompt": "To be [MASK:x] or"}, "Prompt", "[MASK:n]"),
        ({"prompt": "Only blanks", "gen_length": 0}, "Length", "[1,"),
        ({"model": "no-such-model"}, "Model", "Valid names"),
        ({"strategy": "fastest"}, "Strategy", "low_confidence"),
        ({"cache": "prefix", "cfg_scale": 1.0}, "KV cache", "cfg_scale"),
    ],
)
def test_bad_input_names_the_field_and_range(url, changes, field, allowed):
    api = client(url)
    with pytest.raises(AppError) as info:
        api.predict(**settings(**changes), api_name="/generate")
    message = str(info.value)
    assert message.startswith(field) or message.lower().startswith(field.lower()), message
    assert allowed in message, message
    assert "Traceback" not in message and 'File "' not in message


def test_stop_ends_the_run_within_a_step(url):
    api = client(url)
    job = api.submit(**settings(gen_length=500, steps=500), api_name="/generate")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # wait until the run is streaming
        steps = [canvas_state(out[OUTPUT["canvas"]]) for out in job.outputs()]
        if any(s and s[0] >= 3 for s in steps):
            break
        time.sleep(0.05)
    stopped = api.predict(api_name="/stop")
    state = canvas_state(stopped[OUTPUT["canvas"]])
    assert state is not None and state[1] == "stopped"
    stopped_at = state[0]
    assert 0 < stopped_at < 500
    job.result(timeout=30)  # the streaming event ends
    after = [canvas_state(out[OUTPUT["canvas"]]) for out in job.outputs()]
    assert all(s is None or s[1] != "done" for s in after)
    assert "Stopped after" in stopped[OUTPUT["canvas"]]
    assert stopped[OUTPUT["final_text"]].startswith("ROMEO:\n")


def test_a_new_generate_supersedes_the_running_one(url):
    api = client(url)
    long_job = api.submit(**settings(gen_length=500, steps=500), api_name="/generate")
    while not any(canvas_state(out[OUTPUT["canvas"]]) for out in long_job.outputs()):
        time.sleep(0.05)
    short = settings(prompt="JULIET:\n", gen_length=20, steps=10, seed=1, temperature=0.5)
    short_job = api.submit(**short, api_name="/generate")
    short_job.result(timeout=60)
    long_job.result(timeout=60)
    long_frames = [canvas_state(out[OUTPUT["canvas"]]) for out in long_job.outputs()]
    assert all(f is None or f[1] != "done" for f in long_frames), "the superseded run must not finish"
    assert final_text(short_job.outputs()) == direct("JULIET:\n", gen_length=20, steps=10, seed=1, temperature=0.5)


def test_two_sessions_at_once_each_see_their_own_run(url):
    jobs = {}

    def run(prompt, seed):
        api = client(url)
        job = api.submit(
            **settings(prompt=prompt, gen_length=96, steps=48, seed=seed, temperature=0.8), api_name="/generate"
        )
        job.result(timeout=120)
        jobs[prompt] = job.outputs()

    threads = [threading.Thread(target=run, args=(p, s)) for p, s in (("ROMEO:\n", 1), ("JULIET:\n", 2))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for prompt, seed in (("ROMEO:\n", 1), ("JULIET:\n", 2)):
        outputs = jobs[prompt]
        expected = direct(prompt, gen_length=96, steps=48, seed=seed, temperature=0.8)
        assert final_text(outputs) == expected
        canvases = [out[OUTPUT["canvas"]] for out in outputs]
        canvases = [canvas for canvas in canvases if isinstance(canvas, str) and "dc-text" in canvas]
        assert len(canvases) >= 2
        for canvas in canvases:  # every frame this session received shows its own prompt
            first_token = re.search(r'data-i="0"[^>]*>([^<]*)</span>', canvas).group(1)
            assert first_token == prompt[0], (prompt, first_token)


def test_step_button_advances_one_step_at_a_time(url):
    api = client(url)
    values = settings(gen_length=8, steps=4)
    seen, texts = [], []
    for _ in range(6):
        outputs = api.predict(**values, api_name="/step")
        seen.append(canvas_state(outputs[OUTPUT["canvas"]]))
        texts.append(outputs[OUTPUT["final_text"]])
    assert [s[0] for s in seen] == [0, 1, 2, 3, 4, 0]  # after the last step, Step starts a new run
    assert seen[0][1] == "paused" and seen[3][1] == "paused" and seen[4][1] == "done"
    assert texts[4] == direct("ROMEO:\n", gen_length=8, steps=4)  # the finished run's text


def test_downloads_and_replay_of_an_uploaded_trajectory(url, tmp_path):
    import urllib.request

    from gradio_client import handle_file

    from dlm_core.trajectory import Trajectory

    api = client(url)
    job = api.submit(**settings(gen_length=24, steps=12, seed=4, temperature=0.5), api_name="/generate")
    job.result(timeout=60)

    def offered(value):  # a DownloadButton update carrying a file
        return isinstance(value, dict) and value.get("interactive") and (value.get("value") or {}).get("url")

    files = [out for out in job.outputs() if offered(out[OUTPUT["download_json"]]) and offered(out[OUTPUT["download_html"]])]
    assert files, "the downloads were never offered"
    json_file, html_file = files[-1][OUTPUT["download_json"]]["value"], files[-1][OUTPUT["download_html"]]["value"]
    with urllib.request.urlopen(json_file["url"], timeout=30) as response:
        data = response.read()
    trajectory = Trajectory.from_json(data)
    assert trajectory.final_text == direct("ROMEO:\n", gen_length=24, steps=12, seed=4, temperature=0.5)
    with urllib.request.urlopen(html_file["url"], timeout=30) as response:
        page = response.read().decode("utf-8")
    assert "plotly.js v" in page and 'id="dc-data"' in page

    path = tmp_path / "run.json"
    path.write_bytes(data)
    replay = client(url).predict(handle_file(str(path)), api_name="/replay")
    assert canvas_state(replay[OUTPUT["canvas"]]) == (trajectory.num_steps, "replay")
    assert replay[OUTPUT["final_text"]] == trajectory.final_text

    broken = tmp_path / "broken.json"
    broken.write_text(data.decode("utf-8").replace('"steps":[', '"steps":[{"block":"x"},', 1), encoding="utf-8")
    with pytest.raises(AppError) as info:
        client(url).predict(handle_file(str(broken)), api_name="/replay")
    message = str(info.value)
    assert message.startswith("Trajectory file: not a valid Diffusion Canvas trajectory (steps[0]"), message
    assert "Traceback" not in message
