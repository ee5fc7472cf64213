"""The command line: end to end through subprocesses, plus in-process checks of errors and display."""

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from dlm_core import cli
from dlm_core.models import tiny_random_model
from dlm_core.sampler import SamplerConfig, denoise
from dlm_core.trajectory import Trajectory, record

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}


pytestmark = pytest.mark.usefixtures("one_thread")


def start(*args):
    return subprocess.Popen(
        [sys.executable, "-m", "dlm_core", *args], cwd=ROOT, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip


def finish(process):
    stdout, stderr = process.communicate(timeout=120)
    return process.returncode, stdout, stderr


@pytest.mark.slow  # three subprocesses, each importing torch
def test_generate_replay_and_bad_argument_end_to_end(tmp_path, capsys):
    out = tmp_path / "traj.json"
    recorded = tmp_path / "recorded.json"
    record(tiny_random_model(), "Replay me", SamplerConfig(gen_length=6, steps=3)).save(recorded)
    # Interpreter start-up dominates, so the three commands run concurrently; replay reads a file
    # recorded here, and generate's own file is replayed in-process below.
    generate = start(
        "generate", "--prompt", "Once [MASK:2] time", "--gen-length", "12", "--steps", "6", "--block-length", "6",
        "--remask", "cap", "--eta", "0.5", "--temperature", "0.7", "--record-topk", "--out", str(out),
    )  # fmt: skip
    replay = start("replay", str(recorded))
    bad = start("generate", "--prompt", "hi", "--steps", "zero")

    code, stdout, stderr = finish(generate)
    assert code == 0, stderr
    assert "--- final text ---" in stdout and "NFE 6" in stdout and "tokens/forward" in stdout
    assert "\x1b[" not in stdout  # not a terminal: plain output
    trajectory = Trajectory.load(out)
    assert trajectory.num_steps == 6 and trajectory.complete and trajectory.config["remask"] == "cap"
    assert trajectory.final.topk_ids is not None
    assert cli.main(["replay", str(out)]) == 0
    assert trajectory.final_text in capsys.readouterr().out

    code, stdout, stderr = finish(replay)
    assert code == 0, stderr
    assert Trajectory.load(recorded).final_text in stdout and "NFE 3" in stdout

    code, stdout, stderr = finish(bad)
    assert code == 2
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in stderr
    assert "--steps" in lines[0] and "[1, 2048]" in lines[0]


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["generate", "--prompt", "hi", "--temperature", "nan"], "--temperature: temperature must be a finite number"),
        (["generate", "--prompt", "hi", "--strategy", "greedy"], "--strategy: strategy must be one of"),
        (["generate", "--prompt", "hi", "--top-p", "2"], "(0, 1]"),
        (
            ["generate", "--prompt", "hi", "--gen-length", "8", "--steps", "9"],
            "--steps: steps must be an integer in [1, 8]",
        ),
        (["generate", "--prompt", "x [MASK:0]"], "--prompt: prompt has a malformed placeholder"),
        (["generate", "--prompt", "   "], "--prompt"),
        (["generate", "--prompt", "hi", "--gen-length", "600"], "--gen-length"),
        (["generate", "--prompt", "hi", "--model", "no-such-model"], "--model: unknown model"),
        (["generate", "--prompt", "hi", "--unknown-flag"], "unrecognized arguments"),
        (["generate"], "--prompt"),
        (["replay", "/no/such/file.json"], "trajectory file"),
    ],
)
def test_bad_arguments_exit_2_with_one_line(capsys, argv, fragment):
    with pytest.raises(SystemExit) as excinfo:
        raise SystemExit(cli.main(argv))
    assert excinfo.value.code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and fragment in err


def test_replay_rejects_a_corrupt_file(tmp_path, capsys):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"schema_version": "nope"}))
    assert cli.main(["replay", str(path)]) == 2
    assert "trajectory file" in capsys.readouterr().err


def test_in_process_generate_and_animated_replay(tmp_path, capsys):
    out = tmp_path / "t.json"
    argv = ["generate", "--prompt", "Hi", "--gen-length", "6", "--steps", "3", "--display", "canvas", "--out", str(out)]
    assert cli.main(argv) == 0
    stdout = capsys.readouterr().out
    assert stdout.count("--- step ") == 4  # plain frames when not a terminal: initial + 3 steps
    assert cli.main(["replay", str(out), "--animate", "--display", "canvas", "--delay", "0"]) == 0
    assert capsys.readouterr().out.count("--- step ") == 4


def test_none_values_and_strategy_options(tmp_path, capsys):
    argv = ["generate", "--prompt", "Hi", "--gen-length", "4", "--steps", "none", "--strategy", "left_to_right",
            "--top-k", "none", "--display", "none"]  # fmt: skip
    assert cli.main(argv) == 0
    assert "steps 4 | NFE 4" in capsys.readouterr().out


def test_canvas_view_colours_commits_and_remasks():
    model = tiny_random_model()
    states = list(denoise(model, "Hi", SamplerConfig(gen_length=4, steps=2)))
    view = cli.CanvasView(model.token_text, io.StringIO(), "canvas", "always", "2")
    rendered = view.render(states[1])
    assert cli.GREEN in rendered and cli.MASK_GLYPH in rendered and cli.DIM in rendered
    plain = cli.CanvasView(model.token_text, io.StringIO(), "canvas", "never", "2").render(states[1])
    assert "\x1b[" not in plain and plain.count(cli.MASK_GLYPH) == 2


class FakeTerminal(io.StringIO):
    def isatty(self):
        return True


def test_terminal_display_redraws_the_canvas_in_place(monkeypatch):
    monkeypatch.delenv("NO_COLOR", raising=False)
    model = tiny_random_model()
    stream = FakeTerminal()
    view = cli.CanvasView(model.token_text, stream, "auto", "auto", "2")
    assert view.animate and view.color
    for state in denoise(model, "Hi", SamplerConfig(gen_length=4, steps=2)):
        view.show(state, 2)
    output = stream.getvalue()
    assert output.count("\x1b[2F\x1b[J") == 2  # two redraws of a two-line frame
    assert "step 2/2" in output
    monkeypatch.setenv("NO_COLOR", "1")
    assert not cli.CanvasView(model.token_text, FakeTerminal(), "auto", "auto", "2").color


def test_visible_neutralises_escape_sequences():
    assert cli._visible("a\x1b[31mb\n\x9bc\x7f") == "a\u241b[31mb\n\ufffdc\u2421"


def test_model_lookup_is_one_function():
    assert cli.load_model("tiny-random").kind == "diffusion"
    assert cli.load_model("tiny-random-ar").kind == "autoregressive"
    with pytest.raises(cli.CLIError) as excinfo:
        cli.load_model("definitely-not-a-model")
    assert excinfo.value.field == "model"


@pytest.mark.parametrize(
    ("typed", "meant"),
    [
        (r"HAMLET:\nTo be", "HAMLET:\nTo be"),
        (r"a\tb", "a\tb"),
        (r"one\\two", "one\\two"),  # \\ is one literal backslash
        (r"C:\\new", "C:\\new"),  # ... so a backslash before n can be typed
        (r"keep \[MASK] and \x and a trailing \ ", "keep \\[MASK] and \\x and a trailing \\ "),
        (r"\\\n", "\\\n"),
        ("already\nreal", "already\nreal"),
    ],
)
def test_prompt_escapes(typed, meant):
    assert cli.prompt_escapes(typed) == meant


def test_generate_honours_prompt_escapes_and_raw_prompt(tmp_path, capsys):
    r"""The README's `--prompt "HAMLET:\nTo be..."` writes a newline, not a backslash and an n; \[MASK
    stays the prompt syntax's literal; --raw-prompt keeps the text as typed; --help says so."""
    common = ["--gen-length", "4", "--steps", "2", "--display", "none", "--model", "tiny-random"]
    escaped, raw = tmp_path / "escaped.json", tmp_path / "raw.json"
    typed = r"HAMLET:\nTo be,\tor \[MASK] \\n [MASK:2]"
    assert cli.main(["generate", "--prompt", typed, *common, "--out", str(escaped)]) == 0
    assert cli.main(["generate", "--prompt", typed, "--raw-prompt", *common, "--out", str(raw)]) == 0
    capsys.readouterr()
    run = Trajectory.load(escaped)
    assert run.prompt == "HAMLET:\nTo be,\tor \\[MASK] \\n [MASK:2]"
    assert Trajectory.load(raw).prompt == typed
    assert run.final_text.startswith("HAMLET:\nTo be,")  # a newline token, not "\\" + "n"
    with pytest.raises(SystemExit):
        cli.main(["generate", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert r"\n is a newline, \t a tab, \\ a backslash" in help_text and "--raw-prompt" in help_text


def test_a_uniform_state_run_reports_its_noise_and_renoising(tmp_path, capsys):
    out = tmp_path / "u.json"
    argv = ["generate", "--prompt", "Hi", "--gen-length", "6", "--steps", "3", "--noise", "uniform", "--temperature",
            "0.8", "--final-temperature", "0.4", "--display", "none", "--out", str(out)]  # fmt: skip
    assert cli.main(argv) == 0
    stdout = capsys.readouterr().out
    assert "noise uniform | entropy bound 0.1 | temperature 0.8 -> 0.4" in stdout and "renoised" in stdout
    assert "strategy" not in stdout.split("--- stats ---")[1]
    assert cli.main(["replay", str(out)]) == 0
    assert "noise uniform" in capsys.readouterr().out  # the recorded trajectory keeps its noise
