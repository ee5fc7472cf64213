"""Shared fixtures: the tiny random models build in milliseconds, so every test gets its own."""

import os

import pytest

# Subprocesses started by tests (CLI, app) use the millisecond-fast untrained model unless a test says
# otherwise; the built-in models are exercised by their own tests.
os.environ.setdefault("DIFFUSION_CANVAS_MODEL", "tiny-random")

import torch

from dlm_core.models import tiny_random_model


@pytest.fixture
def tiny_model():
    return tiny_random_model(seed=0)


@pytest.fixture
def tiny_ar_model():
    return tiny_random_model(seed=0, causal=True)


@pytest.fixture(scope="module")
def one_thread():
    """torch with one intra-op thread for the module (as the app runs it): reference numbers and exact
    argmax ties do not depend on how many cores the machine has. Use with
    ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
