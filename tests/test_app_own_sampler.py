"""The app end to end with models that run their own sampler: a tiny random DiffusionGemma (through
transformers' ``generate()`` and through diffusers' ``DiffusionGemmaPipeline``) and the LLaDA 2.x
stand-in (diffusers' ``LLaDA2Pipeline``, token editing on), each registered as a local folder and
loaded by the registry's hub loader, exactly as a hub entry is.

The Canvas tab's own handlers are driven in-process (``canvas_tab.make_handlers`` over a real
``create_ui``): Generate streams the run and ends with the canvas, heatmap, stats, inspector and both
downloads; Stop ends the run within one step; settings these samplers do not have are refused with a
message naming the field; the exported trajectory replays. ``test_generate_over_http_*`` does the same
through ``python app.py`` and gradio_client (slow).
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import sys
import threading
import time
from types import SimpleNamespace

import gradio as gr
import pytest

from dlm_core.models import hub, registry
from dlm_core.models.spec import ModelSpec
from dlm_core.trajectory import Trajectory
from tests import hub_fixtures
from tests.app_server import API_DEFAULTS
from ui import canvas_tab
from ui import session as ui_session
from ui.errors import FIELD_LABELS
from ui.session import Session

pytestmark = [
    pytest.mark.usefixtures("one_thread", "fresh_registry", "no_kept_sessions"),
    pytest.mark.filterwarnings("ignore::FutureWarning"),
]

GEMMA = "diffusion-gemma-tiny"
GEMMA_DIFFUSERS = "diffusion-gemma-tiny-diffusers"
LLADA2 = "llada2-standin"
ENGINES = {GEMMA: "transformers generate()", GEMMA_DIFFUSERS: "diffusers DiffusionGemmaPipeline"}


@pytest.fixture(scope="module")
def local_models(tmp_path_factory):
    """Register the tiny DiffusionGemma (both engines) and the LLaDA 2.x stand-in (remote code,
    allow-listed at a local revision) as registry entries; removed again after the module."""
    import transformers.dynamic_module_utils as dynamic_module_utils

    gemma = hub_fixtures.build_diffusion_gemma(tmp_path_factory.mktemp("diffusion-gemma"))
    standin = hub_fixtures.build_llada2_standin(tmp_path_factory.mktemp("llada2"))
    gemma_spec = ModelSpec(key=GEMMA, display_name="DiffusionGemma (tiny)", repo_id=str(gemma),
                           family="diffusion-gemma", description="tiny random test model", chat_template=True)
    specs = {
        GEMMA: gemma_spec,
        GEMMA_DIFFUSERS: dataclasses.replace(gemma_spec, key=GEMMA_DIFFUSERS, engine="diffusers",
                                             display_name="DiffusionGemma (tiny, diffusers)"),
        LLADA2: dataclasses.replace(registry.REGISTRY["llada2.1-mini"], key=LLADA2, repo_id=str(standin.folder),
                                    revision="local-test", display_name="LLaDA2 stand-in", params_b=None,
                                    download_gb=None, max_length=256, eos_ids=(standin.eos_id,)),
    }
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(dynamic_module_utils, "HF_MODULES_CACHE", str(tmp_path_factory.mktemp("hf_modules")))
        patch.setattr(sys, "path", list(sys.path))  # transformers appends the modules folder
        patch.setattr(hub, "TRUSTED_REMOTE_CODE", {**hub.TRUSTED_REMOTE_CODE, str(standin.folder): "local-test"})
        for key, spec in specs.items():
            patch.setitem(registry.REGISTRY, key, spec)
        yield SimpleNamespace(gemma=gemma, standin=standin)


@pytest.fixture(scope="module")
def ui():
    with gr.Blocks():
        return canvas_tab.create_ui()


@pytest.fixture
def handlers(ui):
    return canvas_tab.make_handlers(ui)



REQUEST = SimpleNamespace(session_hash="test-app-own-sampler")


def settings(model: str, **changes) -> dict:
    values = {**API_DEFAULTS, "model": model, "prompt": "hello world", "gen_length": 16, "steps": 6, "seed": 3}
    if model == LLADA2:  # blocks of 4, commit above 0.5, and token editing (LLaDA 2.1)
        values.update(block_length=4, steps=4, threshold=0.5, edit_threshold=0.05)
    return {**values, **changes}


def canvas_state(markup) -> tuple[int, str] | None:
    match = re.search(r'class="dc-canvas" data-step="(\d+)" data-last="\d+" data-status="(\w+)"', str(markup))
    return (int(match.group(1)), match.group(2)) if match else None


def generate(handlers, session, values) -> list[dict]:
    messages = list(handlers["generate"](session, REQUEST, **values))
    ui_session._sessions.pop(REQUEST.session_hash, None)
    return messages


# -- Generate: every output of a finished run ----------------------------------------------------------------


@pytest.mark.parametrize("model", [GEMMA, GEMMA_DIFFUSERS, LLADA2])
def test_generate_shows_the_recorded_run_in_every_output(local_models, ui, handlers, model):
    session = Session()
    messages = generate(handlers, session, settings(model))
    frames = [canvas_state(m.get(ui.canvas)) for m in messages]
    assert frames[0] == (0, "running")  # the first frame is the initial canvas
    final = messages[-1]
    view, trajectory = session.view, session.trajectory
    assert canvas_state(final[ui.canvas]) == (view.last_step, "done") and view.complete
    adapter = registry.load_model(model)
    assert adapter.last_recorder.matched  # the recording ended as the source's own output did
    assert trajectory.source["engine"] == adapter.engine == ENGINES.get(model, "diffusers LLaDA2Pipeline")
    # final text: the source's own decoded output (prompt via the chat template, then the answer)
    assert final[ui.final_text] == trajectory.final_text and trajectory.final_text.startswith(
        adapter.prepare_prompt("hello world"))
    uniform = model != LLADA2
    assert trajectory.noise == ("uniform" if uniform else "mask")
    if uniform:  # drafts shown faded (class "d"), never hatched masks (class "m")
        live = [m[ui.canvas] for m in messages if canvas_state(m.get(ui.canvas)) not in (None, (0, "running"))]
        assert any(' class="t d' in markup for markup in [*live, final[ui.canvas]]) or view.last_step <= 2
        assert ' class="t m' not in final[ui.canvas]
    else:
        assert trajectory.config["edit_threshold"] == 0.05 and trajectory.source["editing_threshold"] == 0.05
    heatmap = json.loads(final[ui.heatmap].plot)
    assert heatmap["data"][0]["type"] == "heatmap" and '"bdata"' in final[ui.heatmap].plot
    assert "Forward passes (NFE)" in final[ui.stats] and f"<td>{trajectory.nfe}</td>" in final[ui.stats]
    assert final[ui.scrub]["maximum"] == view.last_step
    # the downloads: the trajectory JSON (equal to the recorded run) and the offline replay
    json_path, html_path = final[ui.download_json]["value"], final[ui.download_html]["value"]
    assert Trajectory.load(json_path) == trajectory
    assert "<html" in open(html_path, encoding="utf-8").read().lower()
    # the inspector: clicking an answer position shows what the source considered there
    position = trajectory.final.prompt_length
    clicked = handlers["token_clicked"](session, False, SimpleNamespace(index=position))
    assert f"Position {position} at step {view.last_step}" in clicked[ui.inspector]
    session.close()


def test_the_exported_trajectory_replays_in_the_app(local_models, ui, handlers):
    for model in (GEMMA, LLADA2):
        session = Session()
        final = generate(handlers, session, settings(model))[-1]
        recorded = session.trajectory
        replay = Session()
        out = handlers["upload"](replay, final[ui.download_json]["value"], REQUEST)
        ui_session._sessions.pop(REQUEST.session_hash, None)
        assert replay.view.status == "replay" and replay.trajectory == recorded
        assert out[ui.final_text] == recorded.final_text and out[ui.prompt] == "hello world"
        assert canvas_state(out[ui.canvas]) == (recorded.num_steps, "replay")
        assert out[ui.download_json]["value"]  # a replay offers its files again
        session.close()
        replay.close()


# -- Stop -------------------------------------------------------------------------------------------------------


class SlowForward:
    """Count the model's forward passes and make each one slow, so a run is still going when Stop comes."""

    def __init__(self, model, seconds: float = 0.05):
        self.model, self.seconds, self.calls = model, seconds, 0
        self.original = model.forward

    def __enter__(self):
        def forward(*args, **kwargs):
            self.calls += 1
            time.sleep(self.seconds)
            return self.original(*args, **kwargs)

        self.model.forward = forward
        return self

    def __exit__(self, *exc):
        del self.model.forward


def bridge_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("bridge-")]


@pytest.mark.parametrize("model", [GEMMA, GEMMA_DIFFUSERS, LLADA2])
def test_stop_ends_the_run_within_one_step(local_models, ui, handlers, model):
    adapter = registry.load_model(model)
    session = Session()
    values = settings(model, gen_length=48, steps=8)
    if model == LLADA2:  # 4 blocks of 8, 4 steps each
        values = settings(model, gen_length=32, block_length=8, steps=4)
    with SlowForward(adapter.model) as counter:
        stream = handlers["generate"](session, REQUEST, **values)
        for message in stream:
            if (canvas_state(message.get(ui.canvas)) or (0, ""))[0] >= 2:
                break
        out = handlers["stop"](session)
        calls_at_stop = counter.calls
        stream.close()
        deadline = time.monotonic() + 10
        while bridge_threads() and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.2)
        assert counter.calls <= calls_at_stop + 1  # at most the step in flight
    ui_session._sessions.pop(REQUEST.session_hash, None)
    assert not bridge_threads()  # the source's loop has ended
    view = session.view
    assert view.status == "stopped" and not view.complete
    assert canvas_state(out[ui.canvas]) == (view.last_step, "stopped")
    assert f"Stopped after {view.last_step} steps" in out[ui.canvas]
    assert out[ui.final_text] == session.trajectory.final_text
    exports = handlers["exports"](session)  # the downloads follow Stop
    stopped = Trajectory.load(exports[ui.download_json]["value"])
    assert stopped == session.trajectory and not stopped.complete
    session.close()


# -- bad settings name the field --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "changes", "field"),
    [
        (GEMMA, {"cfg_scale": 1.0}, "cfg_scale"),
        (GEMMA, {"cache": "prefix"}, "cache"),
        (GEMMA, {"remask": "cap"}, "remask"),
        (GEMMA_DIFFUSERS, {"remask": "cap"}, "remask"),
        (GEMMA, {"edit_threshold": 0.5}, "edit_threshold"),
        (GEMMA_DIFFUSERS, {"block_length": 4}, "block_length"),
        (GEMMA, {"gen_length": 508}, "gen_length"),  # over the tiny model's 512 positions
        (LLADA2, {"cfg_scale": 2.0}, "cfg_scale"),
        (LLADA2, {"cache": "dual"}, "cache"),
        (LLADA2, {"steps": 5}, "steps"),  # per block of 4: at most 4
        (GEMMA, {"prompt": "The [MASK] sat"}, "prompt"),
    ],
)
def test_settings_the_source_does_not_have_are_refused_naming_the_field(local_models, handlers, model, changes,
                                                                         field):
    session = Session()
    with pytest.raises(gr.Error) as error:
        generate(handlers, session, settings(model, **changes))
    message = error.value.message
    assert message.lower().startswith(FIELD_LABELS[field].lower()), message  # "Steps" names itself: "steps must"
    assert "Traceback" not in message and len(message) > len(FIELD_LABELS[field]) + 10
    assert session.run is None and not bridge_threads()  # refused before any run started


def test_a_source_that_fails_gives_a_clear_message(local_models, handlers):
    adapter = registry.load_model(GEMMA)

    def broken(*args, **kwargs):
        raise RuntimeError("CUDA out of memory (simulated)")

    adapter.model.forward = broken
    try:
        with pytest.raises(gr.Error) as error:
            generate(handlers, Session(), settings(GEMMA))
    finally:
        del adapter.model.forward
    message = error.value.message
    assert "transformers generate() failed after step 0" in message and "out of memory" in message
    assert not bridge_threads()


# -- over HTTP: python app.py with the tiny DiffusionGemma as its default model -----------------------------------


@pytest.mark.slow  # a server in a subprocess, driven over HTTP
def test_generate_and_replay_over_http(local_models, tmp_path):
    from gradio_client import Client, handle_file

    from tests.app_server import OUTPUT, ROOT, app_process, free_port

    # The app's registry is told about the local folder by a tiny launcher (no test hook in the app).
    launcher = tmp_path / "launch.py"
    launcher.write_text(
        "import runpy, sys\n"
        f"sys.path.insert(0, {str(ROOT)!r})\n"
        "from dlm_core.models import registry\n"
        "from dlm_core.models.spec import ModelSpec\n"
        f"registry.REGISTRY[{GEMMA!r}] = ModelSpec(key={GEMMA!r}, display_name='DiffusionGemma (tiny)', "
        f"repo_id={str(local_models.gemma)!r}, family='diffusion-gemma', description='tiny', chat_template=True)\n"
        "runpy.run_path(sys.argv[1], run_name='__main__')\n"
    )
    environment = {**os.environ, "GRADIO_SERVER_NAME": "127.0.0.1", "GRADIO_SERVER_PORT": str(free_port()),
                   "DIFFUSION_CANVAS_MODEL": "tiny-random", "GRADIO_ANALYTICS_ENABLED": "False"}
    command = [sys.executable, str(launcher), str(ROOT / "app.py")]
    with app_process(environment, "own-sampler", command=command) as (url, _pid):
        api = Client(url, download_files=False, verbose=False)
        job = api.submit(**settings(GEMMA), api_name="/generate")
        outputs = list(job) and job.outputs()
        last = outputs[-1]
        assert canvas_state(last[OUTPUT["canvas"]])[1] == "done"
        text = last[OUTPUT["final_text"]]
        assert "<start_of_turn>model" in text
        download = last[OUTPUT["download_json"]]
        path = download["value"]["path"] if isinstance(download.get("value"), dict) else download["value"]
        recorded = Trajectory.load(path)
        assert recorded.final_text == text and recorded.noise == "uniform"
        replayed = api.predict(handle_file(path), api_name="/replay")
        assert replayed[OUTPUT["final_text"]] == text
        with pytest.raises(Exception, match=re.escape(FIELD_LABELS["cfg_scale"])):
            api.predict(**settings(GEMMA, cfg_scale=1.0), api_name="/generate")


# -- early stopping: steps saved, from the recorder's counts, carried in the trajectory ---------------------------


@pytest.mark.parametrize("model", [GEMMA, GEMMA_DIFFUSERS])
def test_early_stopping_is_shown_and_carried_in_the_trajectory(local_models, ui, handlers, model, tmp_path):
    from tests.test_bridge import converged

    adapter = registry.load_model(model)
    generation = adapter.model.generation_config
    threshold, generation.confidence_threshold = generation.confidence_threshold, 0.5
    session = Session()
    try:
        with converged(adapter.model):  # settles after a canvas's second step: it stops there
            final = generate(handlers, session, settings(model, gen_length=24, steps=6))[-1]
    finally:
        generation.confidence_threshold = threshold
    trajectory = session.trajectory
    stop = trajectory.early_stop
    assert stop.block_steps == tuple(adapter.last_recorder.block_steps)  # what the recorder counted
    assert stop.steps_per_block == 6 and stop.finished == 3 and all(taken < 6 for taken in stop.block_steps)
    assert stop.saved == 18 - sum(stop.block_steps) > 0 and stop.planned == 18
    shown = f"stopped early: {stop.saved} of 18 steps saved (3 of 3 canvases)"
    assert shown in final[ui.stats] and "Early stop" in final[ui.stats]
    assert shown in final[ui.canvas] and "at most 6 steps each" in final[ui.canvas]
    assert trajectory.stats()["steps_saved"] == stop.saved
    # carried in the JSON (optional key), read back; a file without the key still reads (no statistic)
    data = json.loads(open(final[ui.download_json]["value"], encoding="utf-8").read())
    assert data["steps_per_block"] == 6
    assert Trajectory.from_dict(data).early_stop == stop
    del data["steps_per_block"]
    old = Trajectory.from_dict(data)
    assert old.early_stop is None and old.steps_per_block is None
    replay = Session()
    path = tmp_path / "old.json"
    path.write_text(json.dumps(data))
    out = handlers["upload"](replay, str(path), REQUEST)
    ui_session._sessions.pop(REQUEST.session_hash, None)
    assert "Early stop" not in out[ui.stats] and out[ui.final_text] == trajectory.final_text
    session.close()
    replay.close()


def test_a_run_that_uses_every_step_saves_none_and_a_stopped_block_is_not_counted(local_models, handlers, ui):
    from dlm_core.state import early_stop

    session = Session()
    final = generate(handlers, session, settings(GEMMA, gen_length=16, steps=4))[-1]
    assert session.trajectory.early_stop.block_steps == (4, 4)
    assert "none: every canvas used all 4 steps" in final[ui.stats]
    states = session.trajectory.states
    cut = next(s.step for s in states if s.block == 1 and s.masked.any())  # stopped inside the second canvas
    partial = early_stop(states[: cut + 1], 4)
    assert partial.finished == 1 and partial.planned == 4 and partial.saved == 0
    assert early_stop(states, None) is None
    session.close()


def test_steps_count_per_canvas_for_models_with_their_own_sampler(local_models, handlers):
    """Our sampler's steps are in total (clamped to at most one per slot, with a note); DiffusionGemma's
    are per canvas, so 12 steps for an 8-token canvas are taken as asked."""
    import warnings

    session = Session()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "Steps: ... using N" note
        generate(handlers, session, settings(GEMMA, gen_length=8, steps=12))
    trajectory = session.trajectory
    assert trajectory.config["steps"] == 12 and trajectory.source["steps_per_canvas"] == 12
    assert trajectory.steps_per_block == 12 and trajectory.early_stop.block_steps == (12,)
    session.close()


def test_llada2_takes_fewer_steps_per_block_than_it_has_blocks(local_models, handlers):
    """12 blocks of 4 tokens at 4 steps per block: LLaDA 2.x's steps are per block, so the app runs it
    as asked (our sampler's rule, at least one step per block in total, is not its rule)."""
    import warnings

    session = Session()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "Steps: ... using N" note
        generate(handlers, session, settings(LLADA2, gen_length=48, block_length=4, steps=4, edit_threshold=0))
    trajectory = session.trajectory
    assert trajectory.config["steps"] == 4 and trajectory.source["steps_per_block"] == 4
    assert trajectory.steps_per_block == 4 and max(trajectory.early_stop.block_steps) <= 4
    session.close()
