"""Hardening of the app in-process: limits wired as documented, bounded memory per session and in all,
model names that are never paths, generated download names, hostile text escaped (and isolated) in
every piece of HTML, and no code path from an upload to pickle/eval.

The API-level counterparts (a running server) are in ``test_hardening_api.py``.
"""

from __future__ import annotations

import ast
import tracemalloc
from html.parser import HTMLParser
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

_threads = torch.get_num_threads()
import app  # noqa: E402  (builds the demo: the tiny model, no server)
from ui import canvas_tab, errors, limits, models, settings, streaming  # noqa: E402
from ui import session as ui_session  # noqa: E402

torch.set_num_threads(_threads)  # app.configure_torch set 1 thread for the whole test process

import gradio as gr  # noqa: E402

from dlm_core.models import registry  # noqa: E402
from dlm_core.sampler import PromptError, SamplerConfig, StepState  # noqa: E402
from dlm_core.trajectory import record  # noqa: E402
from dlm_core.viz import RunMeta, RunView, canvas_html, inspector_html, standalone_html, stats_html  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


# -- limits --------------------------------------------------------------------------------------------


def _component(elem_id: str):
    matches = [b for b in app.demo.blocks.values() if getattr(b, "elem_id", None) == elem_id]
    assert len(matches) == 1, elem_id
    return matches[0]


def test_limits_are_wired_where_documented():
    assert app.demo._queue.max_size == limits.QUEUE_MAX_SIZE == 64
    assert app.launch_kwargs()["max_file_size"] == limits.MAX_UPLOAD_BYTES == 20 * 1024 * 1024
    inference = [fn for fn in app.demo.fns.values() if fn.concurrency_id == "inference"]
    assert {fn.api_name for fn in inference} == {"generate", "step", "continue", "rewrite", "race", "measure"}
    assert {fn.concurrency_limit for fn in inference} == {limits.INFERENCE_CONCURRENCY}
    assert _component("dc-field-gen_length").maximum == limits.MAX_GEN_LENGTH
    assert _component("dc-field-steps").maximum == limits.MAX_STEPS
    assert _component("dc-field-block_length").maximum == limits.MAX_GEN_LENGTH
    assert limits.MAX_RUN_SECONDS == 60.0  # the default (the test environment does not override it)


def test_run_seconds_from_the_environment(monkeypatch):
    for raw, expected in (("2.5", 2.5), ("", 60.0), ("abc", 60.0), ("0", 60.0), ("-3", 60.0), ("nan", 60.0)):
        monkeypatch.setenv(limits.RUN_SECONDS_ENV, raw)
        assert limits._env_seconds(limits.RUN_SECONDS_ENV, 60.0) == expected, raw


def test_prompt_is_capped_in_characters_before_tokenizing():
    values = dict(settings.START_VALUES, gen_length=8, steps=4)
    with pytest.raises(PromptError) as info:
        settings.build_config(prompt="x" * (limits.MAX_PROMPT_CHARS + 1), **values)
    assert info.value.field == "prompt" and f"at most {limits.MAX_PROMPT_CHARS} characters" in str(info.value)
    config, _ = settings.build_config(prompt="x" * limits.MAX_PROMPT_CHARS, **values)  # the limit itself is fine
    assert config.gen_length == 8


# -- model names are never paths --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    ["mlm:../../etc", "mlm:/etc", "mlm:~/models", "mlm:assets", "mlm:tests", "mlm:a/../../b", "mlm:x\x00y", "mlm:"],
)
def test_user_typed_local_paths_are_refused(name):
    with pytest.raises(gr.Error) as info:
        models.checked_model_name(name)
    message = info.value.message
    assert (
        message.startswith("Model: mlm: takes a Hugging Face Hub repo id") and "local paths are not accepted" in message
    )


@pytest.mark.parametrize("name", [5, 1.5, ["tiny-random"], {"a": 1}, b"tiny-random"])
def test_model_must_be_text(name):
    with pytest.raises(gr.Error, match="Model: must be a model name"):
        models.checked_model_name(name)


def test_hub_ids_registry_names_and_the_servers_default_pass(monkeypatch):
    assert models.checked_model_name(None) == "tiny-random"
    assert models.checked_model_name("  ") == "tiny-random"
    assert models.checked_model_name("canvas-ar") == "canvas-ar"
    assert models.checked_model_name("mlm:answerdotai/ModernBERT-base") == "mlm:answerdotai/ModernBERT-base"
    assert models.checked_model_name("mlm:bert-base-uncased") == "mlm:bert-base-uncased"
    monkeypatch.setenv("DIFFUSION_CANVAS_MODEL", "mlm:/srv/models/bert")  # set by whoever runs the server
    assert models.checked_model_name("") == "mlm:/srv/models/bert"


# -- memory --------------------------------------------------------------------------------------------


@pytest.fixture
def kept(monkeypatch):
    """An empty registry of kept sessions, restored afterwards."""
    saved = dict(ui_session._kept)
    ui_session._kept.clear()
    yield ui_session._kept
    ui_session._kept.clear()
    ui_session._kept.update(saved)


def fake_view(steps: int, positions: int):
    return SimpleNamespace(states=[SimpleNamespace(tokens=np.zeros(positions, dtype=np.int64))] * steps)


def replayed_session(view) -> ui_session.Session:
    """A session showing ``view`` as a replay (a trajectory is held with it)."""
    session = ui_session.Session()
    session.show_replay(view, trajectory=object())
    return session


def test_kept_runs_are_bounded_in_bytes_and_count(kept, monkeypatch):
    per_view = 50 * 100 * limits.BYTES_PER_STEP_POSITION  # 1 MB
    monkeypatch.setattr(ui_session, "KEPT_RUNS_BYTES", int(3.5 * per_view))
    monkeypatch.setattr(ui_session, "KEPT_RUNS_MAX", 100)
    sessions = []
    for _ in range(6):
        sessions.append(replayed_session(fake_view(50, 100)))
        assert sum(s.kept_bytes() for s in sessions) <= limits.KEPT_RUNS_BYTES
    assert [s.view is not None for s in sessions] == [False, False, False, True, True, True]
    assert all(s.trajectory is None for s in sessions[:3])  # released: nothing of the run is held

    monkeypatch.setattr(ui_session, "KEPT_RUNS_MAX", 2)
    small = [replayed_session(fake_view(1, 1)) for _ in range(4)]
    assert len(kept) == 2 and small[-1].view is not None and small[0].view is None


def test_a_streaming_session_is_never_released(kept, monkeypatch):
    monkeypatch.setattr(ui_session, "KEPT_RUNS_MAX", 1)
    live = ui_session.Session()
    live.show_replay(fake_view(5, 5), trajectory=object())
    live.run = SimpleNamespace(working=True, cancel=lambda: None)
    others = [ui_session.Session() for _ in range(3)]
    for other in others:
        other.show_replay(fake_view(5, 5), trajectory=object())
    assert live.view is not None
    assert others[-1].view is not None and others[0].view is None


def test_real_run_memory_is_within_the_estimate(kept):
    """The estimate behind KEPT_RUNS_BYTES (bytes per step and position) covers what a run holds."""
    model = registry.load_model("tiny-random")
    config = SamplerConfig(gen_length=64, steps=32, record_topk=True, temperature=0.5, seed=1)
    tracemalloc.start()
    try:
        run = ui_session.Run(model, "ROMEO:\n", config)
        while run.advance():
            pass
        held = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    session = ui_session.Session()
    session.start(run)
    estimate = session.kept_bytes()
    print(f"a 71-position, 33-state run holds {held / 1e6:.2f} MB; estimate {estimate / 1e6:.2f} MB")
    assert held <= estimate, (held, estimate)
    assert estimate <= 4 * held, "the estimate should be an upper bound, not a wild one"


def test_closing_a_tab_releases_its_run_and_files(kept, tmp_path):
    model = registry.load_model("tiny-random")
    session = ui_session.Session()
    run = ui_session.Run(model, "ROMEO:\n", SamplerConfig(gen_length=8, steps=4))
    session.start(run)
    run.advance()
    folder = session.export_folder()
    (folder / "x.json").write_text("{}")
    session.close()
    assert run.cancelled.is_set() and not run.advance()
    assert session.run is None and session.view is None and session.trajectory is None
    assert not folder.exists()


# -- downloads: generated names, never from user text --------------------------------------------------------


def test_download_names_are_generated(kept):
    hostile = '../../etc/passwd"><img src=x onerror=alert(1)>\n'
    trajectory = record(registry.load_model("tiny-random"), hostile, SamplerConfig(gen_length=6, steps=3))
    view = RunView.from_trajectory(trajectory)
    session = ui_session.Session()
    ui = SimpleNamespace(download_json="json", download_html="html")
    files = streaming.write_exports(ui, session, trajectory, view)
    paths = [Path(files[key]["value"]) for key in ("json", "html")]
    assert [p.name for p in paths] == ["diffusion-canvas-trajectory.json", "diffusion-canvas-replay.html"]
    for path in paths:
        assert path.resolve().parent == session.folder.resolve()
        assert path.resolve().is_relative_to(ui_session._export_root.resolve())
    session.close()


# -- hostile text in every piece of HTML --------------------------------------------------------------------

HOSTILE = [
    "</textarea><script>window.__pwned=1</script>",
    '" onmouseover="window.__pwned=1" x="',
    "' onfocus='window.__pwned=1' autofocus '",
    '<img src=x onerror="window.__pwned=1">',
    "\u202eevil",  # RIGHT-TO-LEFT OVERRIDE: must not reorder the tokens after it
    "zero\u200bwidth\u200d\ufeff\u2066",
    "<!--",
    "]]></script><!--",
    "&lt;b&gt;&amp;",
    "\x00\x1b[31m\x7f",
    "A" * 4000,  # a very long token
]


def hostile_view() -> RunView:
    """Prompt token 0, then one slot per hostile text, all written at step 1 (tooltips with top-k)."""
    n = len(HOSTILE) + 1
    texts = {0: "P", **{i + 1: text for i, text in enumerate(HOSTILE)}, 99: "?"}
    fixed = np.array([True] + [False] * (n - 1))
    topk_ids = np.tile(np.arange(1, 6, dtype=np.int64), (n, 1))
    topk_probs = np.full((n, 5), 0.1)

    def state(step: int) -> StepState:
        done = step == 1
        return StepState(
            step=step,
            block=0,
            tokens=np.array([0] + ([i + 1 for i in range(n - 1)] if done else [99] * (n - 1)), dtype=np.int64),
            masked=np.array([False] + [not done] * (n - 1)),
            fixed=fixed,
            prompt_length=1,
            committed=np.arange(1, n, dtype=np.int64) if done else np.zeros(0, dtype=np.int64),
            remasked=np.zeros(0, dtype=np.int64),
            confidence=np.full(n, 0.5),
            prob=np.full(n, 0.5),
            proposal=np.array([-1] + list(range(1, n)), dtype=np.int64),
            nfe=step,
            elapsed=0.1 * step,
            answer_end=n,
            topk_ids=topk_ids,
            topk_probs=topk_probs,
        )

    meta = RunMeta(
        model=HOSTILE[0],
        model_kind="diffusion",
        prompt=HOSTILE[1],
        config={"strategy": "low_confidence", "steps": 1, "record_topk": True},
        mask_id=99,
        eos_ids=(),
        expected_steps=1,
        label=HOSTILE[3],
    )
    return RunView(meta, texts.__getitem__, [state(0), state(1)])


class Markup(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.attributes: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.attributes.extend(name for name, _ in attrs)


def assert_inert(markup: str) -> None:
    parser = Markup()
    parser.feed(markup)
    parser.close()
    assert not {"script", "textarea", "img", "iframe", "svg", "style"} & set(parser.tags), parser.tags
    assert not [a for a in parser.attributes if a.startswith("on") or a == "autofocus"], parser.attributes
    assert "<!--" not in markup


def test_hostile_text_is_escaped_in_every_fragment():
    view = hostile_view()
    fragments = [canvas_html(view, step, detail=True, titles=True, note=HOSTILE[2]) for step in (0, 1)]
    fragments += [inspector_html(view, 1, i) for i in range(view.length)]
    fragments += [stats_html(view, 1), canvas_tab.selection_text(view, set(range(1, view.length)))]
    fragments.append(models.model_note_html(SimpleNamespace(name=HOSTILE[0], kind=HOSTILE[1]), HOSTILE[3]))
    for fragment in fragments:
        assert_inert(fragment)
    error = errors.user_error("prompt", HOSTILE[0] + HOSTILE[3])
    assert_inert(error.message)


def test_hostile_text_cannot_break_out_of_the_standalone_export():
    page = standalone_html(hostile_view())
    benign_run = record(registry.load_model("tiny-random"), "AB", SamplerConfig(gen_length=4, steps=2))
    benign = standalone_html(RunView.from_trajectory(benign_run))
    found, expected = Markup(), Markup()
    found.feed(page)
    expected.feed(benign)
    # The export's own elements only: no injected script, image, frame or event handler, and no
    # "</script" or "<!--" that could end its embedded JSON data early.
    for tag in ("script", "img", "iframe", "textarea", "svg"):
        assert found.tags.count(tag) == expected.tags.count(tag), tag
    assert {a for a in found.attributes if a.startswith("on")} == {a for a in expected.attributes if a.startswith("on")}
    assert page.lower().count("</script") == benign.lower().count("</script")
    assert page.count("<!--") == benign.count("<!--")


@pytest.mark.slow  # a real browser
def test_hostile_text_renders_inert_and_isolated_in_a_browser():
    """Chromium renders the canvas: nothing runs, a long token wraps, and a right-to-left override in
    one token does not reorder the tokens after it (each token is a bidi-isolated span)."""
    from playwright.sync_api import sync_playwright

    from dlm_core.viz.export import canvas_css

    chromium = Path("/usr/bin/chromium")
    assert chromium.exists(), "Chromium is required (scripts/test.sh installs it)"
    view = hostile_view()
    body = "".join([canvas_html(view, 1, detail=True), inspector_html(view, 1, 5), stats_html(view, 1)])
    page_html = (
        f"<!doctype html><html><head><style>{canvas_css()}</style></head><body style='width:420px'>{body}</body></html>"
    )
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(chromium), args=["--headless", "--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 500, "height": 800})
            dialogs: list[str] = []
            page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
            page.set_content(page_html)
            for span in page.locator("[data-i]").all():
                span.hover()
            page.wait_for_timeout(200)
            assert page.evaluate("() => window.__pwned") is None
            assert dialogs == []
            text = page.locator(".dc-text")
            assert text.evaluate("e => e.scrollWidth <= e.clientWidth + 1"), "a long token must wrap"
            # The short tokens after the RTL override (position 5) keep reading order on their line.
            # A token may wrap onto the next line, so each token's first line box is compared (its
            # bounding box would span both lines and start at the left margin).
            boxes = page.evaluate(
                "() => [6, 7, 8, 9, 10].map(i => document.querySelector(`[data-i='${i}']`)"
                ".getClientRects()[0]).map(r => [Math.round(r.top), Math.round(r.left)])"
            )
            isolated = page.evaluate("() => getComputedStyle(document.querySelector(\"[data-i='5']\")).unicodeBidi")
        finally:
            browser.close()
    assert isolated == "isolate"
    same_line = [(a, b) for a, b in zip(boxes, boxes[1:], strict=False) if a[0] == b[0]]
    assert same_line, boxes
    assert all(a[1] < b[1] for a, b in same_line), f"tokens after U+202E are reordered: {boxes}"


# -- uploads: JSON only, never unpickled or executed ----------------------------------------------------------

FORBIDDEN_CALLS = {
    "eval",
    "exec",
    "compile",
    "__import__",
    "pickle.load",
    "pickle.loads",
    "torch.load",
    "np.load",
    "numpy.load",
    "marshal.loads",
    "yaml.load",
    "yaml.unsafe_load",
    "dill.loads",
    "shelve.open",
    "os.system",
    "subprocess.run",
    "subprocess.Popen",
}


def _call_names(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Call):
            func = node.func
            parts = []
            while isinstance(func, ast.Attribute):
                parts.append(func.attr)
                func = func.value
            if isinstance(func, ast.Name):
                parts.append(func.id)
            names.add(".".join(reversed(parts)))
    return names


def test_no_path_from_the_web_reaches_pickle_or_eval():
    sources = [ROOT / "app.py", *sorted((ROOT / "ui").glob("*.py")), ROOT / "dlm_core" / "trajectory.py"]
    sources += sorted((ROOT / "dlm_core" / "viz").glob("*.py"))
    for source in sources:
        found = _call_names(source) & FORBIDDEN_CALLS
        assert not found, f"{source.relative_to(ROOT)} calls {sorted(found)}"
    assert "json.loads" in _call_names(ROOT / "dlm_core" / "trajectory.py")


def test_the_upload_handler_checks_size_and_structure_before_parsing(tmp_path, kept):
    """Called directly (as gradio does after its own max_file_size check): an oversized or
    container-bomb file is refused before json.loads; a good one replays."""
    handlers = canvas_tab.make_handlers(canvas_tab.CanvasUI())
    upload = handlers["upload"]
    request = SimpleNamespace(session_hash="hardening-test")
    session = ui_session.Session()
    bomb = tmp_path / "bomb.json"
    bomb.write_bytes(b"[" + b"[]," * (limits.MAX_UPLOAD_CONTAINERS + 1) + b"[]]")
    with pytest.raises(gr.Error, match="Trajectory file: the file has .* the limit is 1000000"):
        upload(session, str(bomb), request)
    big = tmp_path / "big.json"
    with open(big, "wb") as handle:
        handle.truncate(limits.MAX_UPLOAD_BYTES + 1)
    with pytest.raises(gr.Error, match="Trajectory file: the file is 21.0 MB; the limit is 20 MB"):
        upload(session, str(big), request)
    assert session.view is None
    ui_session._sessions.pop("hardening-test", None)


# -- the command line: the same validation, one line per error, never a traceback --------------------------


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["generate", "--prompt", "   "], "error: --prompt: prompt must contain at least one non-whitespace"),
        (["generate", "--prompt", "x", "--steps", "abc"], "error: --steps: steps must be an integer in [1, 2048]"),
        (["generate", "--prompt", "x", "--temperature", "1" + "0" * 400], "error: --temperature: temperature must"),
        (["generate", "--prompt", "x", "--gen-length", "1e400"], "error: --gen-length: gen_length must be an integer"),
        (["generate", "--prompt", "[MASK:0] x"], "error: --prompt: prompt has a malformed placeholder"),
        (["generate", "--prompt", "x" * 600], "error: --prompt: prompt is 600 tokens"),
        (["generate", "--prompt", "x", "--strategy", "fastest"], "error: --strategy: strategy must be one of"),
        (["generate", "--prompt", "x", "--model", "../../etc/passwd"], "error: --model: unknown model"),
        (["replay", "/"], "error: cannot read '/': Is a directory"),
        (["replay", "/no/such/file.json"], "error: trajectory file '/no/such/file.json': file: cannot read"),
        (["replay", "/dev/null"], "json: not valid JSON"),
        (["replay", "assets/examples.json"], "document: must be an object, got list"),
    ],
)
def test_cli_bad_input_is_one_clear_line(argv, expected, capsys, monkeypatch):
    from dlm_core import cli

    monkeypatch.chdir(ROOT)
    assert cli.main([*argv, "--display", "none"]) == 2
    err = capsys.readouterr().err
    assert expected in err, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
