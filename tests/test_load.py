"""The short load test in CI: 30 concurrent gradio_client sessions x 1 short request on the tiny model.

Every request must succeed and produce exactly the text of the same request run alone through the
engine; the whole thing (server start included) must finish within 60 s on a 2-core machine.
Full form: ``python benchmarks/load_test.py`` (see its docstring).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import load_test  # noqa: E402

pytestmark = pytest.mark.slow  # a server and 30 concurrent HTTP sessions


def test_thirty_concurrent_sessions_each_get_their_own_exact_result():
    started = time.monotonic()
    report = load_test.run(model="tiny-random", clients=30, requests=1, short=True, timeout=50, deadline=50)
    elapsed = time.monotonic() - started
    print(report.summary())
    assert len(report.requests) == 30
    assert len({r.seed for r in report.requests}) == 30  # every session its own seed
    assert report.failures == []
    assert all(r.text and r.text.startswith(r.prompt) for r in report.requests)
    assert len({r.text for r in report.requests}) > 20  # distinct seeds, distinct texts: no shared session state
    assert elapsed < 60, f"30 short requests took {elapsed:.1f} s (server start and references included)"
