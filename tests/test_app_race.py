"""The Race tab through the API: lanes stream, exactly one finishes first, each diffusion lane explains its
break-even live, the projection comes after the race, bad input names the field."""

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
    job = client.submit("ROMEO:\n", "ar", 32, 0.5, "dual", 0.0, 3, 0.1, "tiny-random", "threshold", api_name="/race")
    updates = list(job)
    assert len(updates) >= 2
    streamed = [u for u in updates if any(isinstance(v, str) and "dc-race-lane" in v for v in u)]
    last_lanes = [v for v in streamed[-1] if isinstance(v, str) and "dc-race-lane" in v]
    assert len(last_lanes) == 2
    assert sum("finished first" in lane for lane in last_lanes) == 1
    assert all(re.search(r"\d+ forward passes", lane) for lane in last_lanes)
    assert any("Autoregressive twin" in lane for lane in last_lanes)
    diffusion = next(lane for lane in last_lanes if "Diffusion" in lane)
    assert "dc-race-explain" in diffusion and "tokens per pass to win" in diffusion
    assert "tokens per pass to win" not in next(lane for lane in last_lanes if "Autoregressive twin" in lane)
    projection = [v for v in updates[-1] if isinstance(v, str) and "Projection, not a measurement" in v]
    assert len(projection) == 1 and "H100" in projection[0]


def test_race_strategies_mode_runs_five_lanes(url):
    client = Client(url, download_files=False, verbose=False)
    job = client.submit("Hi", "strategies", 16, 0.5, "off", 0.0, 1, 1.5, "tiny-random", "threshold", api_name="/race")
    streamed = [u for u in job if any(isinstance(v, str) and "dc-race-lane" in v for v in u)]
    last_lanes = [v for v in streamed[-1] if isinstance(v, str) and "dc-race-lane" in v]
    names = ("left_to_right", "low_confidence", "random", "threshold", "entropy_bound")
    assert len(last_lanes) == 5
    assert {name for name in names if any(f"· {name}" in lane for lane in last_lanes)} == set(names)
    assert all("timed on its own" in lane for lane in last_lanes)


def test_race_bad_length_names_the_field(url):
    client = Client(url, download_files=False, verbose=False)
    with pytest.raises(Exception) as error:
        client.predict("Hi", "ar", 100000, 0.5, "dual", 0.0, 1, 0.1, "tiny-random", "threshold", api_name="/race")
    message = str(error.value)
    assert "Length" in message or "length" in message
    assert "Traceback" not in message


def test_race_bad_model_names_the_field(url):
    client = Client(url, download_files=False, verbose=False)
    with pytest.raises(Exception) as error:
        client.predict("Hi", "ar", 16, 0.5, "dual", 0.0, 1, 0.1, "llada-8b-instruct", "threshold", api_name="/race")
    assert "Diffusion model" in str(error.value) and "Traceback" not in str(error.value)


def test_race_with_the_entropy_budget_rule(url):
    client = Client(url, download_files=False, verbose=False)
    job = client.submit("Hi", "ar", 16, 0.5, "dual", 0.0, 2, 3.0, "tiny-random", "entropy_bound", api_name="/race")
    streamed = [u for u in job if any(isinstance(v, str) and "dc-race-lane" in v for v in u)]
    last_lanes = [v for v in streamed[-1] if isinstance(v, str) and "dc-race-lane" in v]
    assert any("entropy budget γ 3" in lane and "tokens per pass to win" in lane for lane in last_lanes)


def test_race_fixed_rule_with_its_order_randomness_and_a_bad_one_named(url):
    client = Client(url, download_files=False, verbose=False)
    job = client.submit("Hi", "ar", 16, 0.5, "dual", 1.0, 2, 1.0, "tiny-random", "low_confidence", 4, 0.3, api_name="/race")
    streamed = [u for u in job if any(isinstance(v, str) and "dc-race-lane" in v for v in u)]
    lanes = [v for v in streamed[-1] if isinstance(v, str) and "dc-race-lane" in v]
    assert any("4 tokens per pass, most confident first (order randomness 0.3)" in lane for lane in lanes)
    with pytest.raises(Exception) as error:
        client.predict("Hi", "ar", 16, 0.5, "dual", 1.0, 2, 1.0, "tiny-random", "low_confidence", 4, 5.0, api_name="/race")
    message = str(error.value)
    assert "Order randomness" in message and "1" in message and "Traceback" not in message
