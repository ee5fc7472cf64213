"""The README's examples run as printed, from outside the repository.

"The engine in five lines" used to fail anywhere but the repository root (``ModuleNotFoundError:
dlm_core``). ``bash scripts/setup.sh`` installs the package editable into .venv (``pip install -e .``,
pyproject.toml), so the example must run from any directory. The test copies the README's code block
as it stands and runs it in a subprocess in an empty temporary directory: through the installed
package when this interpreter has it (scripts/test.sh runs the tests in .venv, where it is installed),
else with PYTHONPATH naming this checkout. Nothing is downloaded (the built-in model is in assets/).
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"


def readme_block(heading: str, language: str) -> str:
    """The first ```language block after ``heading`` in the README."""
    text = README.read_text(encoding="utf-8")
    start = text.index(heading)
    match = re.compile(rf"```{language}\n(.*?)```", re.S).search(text, start)
    assert match, f"no {language} block after {heading!r}"
    return match.group(1)


def installed_checkout() -> Path | None:
    """The checkout the diffusion-canvas distribution of this interpreter points at (editable), if any."""
    # Not importlib.metadata.distribution(): from the repository root it may find the build's leftover
    # diffusion_canvas.egg-info first, which has no direct_url.json.
    for distribution in importlib.metadata.distributions(name="diffusion-canvas"):
        url = json.loads(distribution.read_text("direct_url.json") or "{}").get("url", "")
        if url.startswith("file://"):
            return Path(url.removeprefix("file://")).resolve()
    return None


def outside_env() -> tuple[dict[str, str], str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    checkout = installed_checkout()
    if checkout is not None:
        assert checkout == ROOT, f"this interpreter's diffusion-canvas is installed from {checkout}, not {ROOT}"
        return env, "installed package"
    # scripts/test.sh runs the tests in scripts/setup.sh's .venv, which must have the package installed.
    assert Path(sys.prefix).resolve() != (ROOT / ".venv").resolve(), ".venv lacks the package: rerun scripts/setup.sh"
    env["PYTHONPATH"] = str(ROOT)
    return env, "PYTHONPATH"


@pytest.mark.slow  # a subprocess that imports torch and runs the built-in model (~5 s)
def test_engine_example_runs_from_any_directory(tmp_path):
    code = readme_block("## The engine in five lines", "python")
    assert "load_model(" in code and "denoise(" in code
    env, how = outside_env()
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, f"({how}) {result.stderr[-3000:]}"
    config = re.search(r"steps=(\d+)", code)
    steps = int(config.group(1)) if config else None
    # One state per step, 0..N, each printed as "step nfe text" (the text spans lines: the prompt has "\n").
    states = re.findall(r"^(\d+) (\d+) ROMEO:", result.stdout, re.M)
    assert states and states[0] == ("0", "0"), result.stdout[:500]
    if steps is not None:
        assert [int(step) for step, _ in states] == list(range(steps + 1)), states
    texts = re.split(r"^\d+ \d+ ROMEO:", result.stdout, flags=re.M)[1:]
    first, last = texts[0], texts[-1]
    assert "_" * 8 in first and "_" not in last, (first, last)  # all masked, then all written
    assert "<|mask|>" not in result.stdout
    assert not any(tmp_path.iterdir()), "the example wrote files into the working directory"


@pytest.mark.slow  # a subprocess that imports torch
def test_cli_example_from_the_readme_writes_a_newline(tmp_path):
    """The README's `python -m dlm_core generate --prompt "HAMLET:\\nTo be, ..."` line, run from a temp
    directory (with the tiny model, for speed): the trajectory's prompt has a real newline."""
    block = readme_block("Command line:", "bash")
    command = block.split("\npython -m dlm_core replay")[0].replace("\\\n", " ")
    match = re.search(r'--prompt "([^"]*)"', command)
    assert match and r"\n" in match.group(1), command
    env, how = outside_env()
    out = tmp_path / "run.json"
    result = subprocess.run(
        [sys.executable, "-m", "dlm_core", "generate", "--prompt", match.group(1), "--model", "tiny-random",
         "--gen-length", "8", "--steps", "4", "--display", "none", "--out", str(out)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, f"({how}) {result.stderr[-3000:]}"
    prompt = json.loads(out.read_text())["prompt"]
    assert prompt.startswith("HAMLET:\nTo be") and "\\n" not in prompt, prompt
