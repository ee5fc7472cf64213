"""The Race tab through the API: lanes stream, exactly one finishes first, bad input names the field."""

import re

import pytest
from app_server import running_app
from gradio_client import Client

pytestmark = pytest.mark.slow  # a server in a subprocess, driven over HTTP


@pytest.fixture(scope="module")
def url():
    with running_app(model="tiny-random", name="race") as base:
        yield base


def test_race_streams_lanes_and_ranks_the_finishers(url):
    client = Client(url, download_files=False, verbose=False)
    job = client.submit("ROMEO:\n", "ar", 32, 0.5, "dual", 0.0, 3, api_name="/race")
    updates = list(job)
    assert len(updates) >= 2
    streamed = [u for u in updates if any(isinstance(v, str) and "dc-race-lane" in v for v in u)]
    last_lanes = [v for v in streamed[-1] if isinstance(v, str) and "dc-race-lane" in v]
    assert len(last_lanes) == 2
    assert sum("finished first" in lane for lane in last_lanes) == 1
    assert all(re.search(r"\d+ forward passes", lane) for lane in last_lanes)
    assert any("Autoregressive twin" in lane for lane in last_lanes)


def test_race_strategies_mode_runs_four_lanes(url):
    client = Client(url, download_files=False, verbose=False)
    job = client.submit("Hi", "strategies", 16, 0.5, "off", 0.0, 1, api_name="/race")
    streamed = [u for u in job if any(isinstance(v, str) and "dc-race-lane" in v for v in u)]
    last_lanes = [v for v in streamed[-1] if isinstance(v, str) and "dc-race-lane" in v]
    assert len(last_lanes) == 4
    assert {name for name in ("left_to_right", "low_confidence", "random", "threshold") if any(name in lane for lane in last_lanes)} == {
        "left_to_right", "low_confidence", "random", "threshold"}


def test_race_bad_length_names_the_field(url):
    client = Client(url, download_files=False, verbose=False)
    with pytest.raises(Exception) as error:
        client.predict("Hi", "ar", 100000, 0.5, "dual", 0.0, 1, api_name="/race")
    message = str(error.value)
    assert "Length" in message or "length" in message
    assert "Traceback" not in message
