"""Shared fixtures and the two test runs.

The tiny random models build in milliseconds, so every test gets its own.

Two runs: ``bash scripts/test.sh`` (CI, the README's command) runs every test at full strength;
``pytest -m "not slow"`` is the everyday run. It leaves out the ``slow`` tests (servers,
subprocesses, a browser, the real corpus and model folders) and loads the hypothesis profile
``everyday``, under which each property test draws a fifth of its examples (``hypothesis_budget.examples``).
"""

import gc
import os

import pytest
from hypothesis import settings

# Importing torch, transformers and gradio creates millions of long-lived objects; without this every
# few thousand of them start a full collection that walks them all again (~1.5 s of the imports).
# Collection comes back on, with those objects frozen, once the tests are collected (below).
gc.disable()
# Subprocesses started by tests (CLI, app) use the millisecond-fast untrained model unless a test says
# otherwise; the built-in models are exercised by their own tests.
os.environ.setdefault("DIFFUSION_CANVAS_MODEL", "tiny-random")

import torch  # noqa: E402 (after the environment above, which subprocesses inherit)

from dlm_core.models import registry, tiny_random_model  # noqa: E402

# The full run keeps hypothesis's default profile (100 examples): every test draws its stated count.
settings.register_profile("everyday", max_examples=20)


def pytest_configure(config):
    """``-m "not slow"`` selects the everyday profile unless ``--hypothesis-profile`` names one."""
    if "not slow" in (config.getoption("markexpr") or "") and not config.getoption("hypothesis_profile"):
        settings.load_profile("everyday")


@pytest.hookimpl(wrapper=True)
def pytest_collection(session):
    """Everything imported while collecting (torch, transformers, gradio) lives until the end; freezing
    it keeps each full ``gc.collect`` (the model registry runs one per eviction) from walking it again:
    about 0.3 s per collection otherwise. The tests run with the garbage collector on."""
    try:
        return (yield)
    finally:
        gc.freeze()
        gc.enable()


@pytest.fixture
def tiny_model():
    return tiny_random_model(seed=0)


@pytest.fixture
def tiny_ar_model():
    return tiny_random_model(seed=0, causal=True)


@pytest.fixture
def fresh_registry():
    """An empty model cache before and after the test, so no test sees another's loaded models. Use with
    ``pytestmark = pytest.mark.usefixtures("fresh_registry")``."""
    registry.clear_cache()
    yield
    registry.clear_cache()


@pytest.fixture
def no_kept_sessions():
    """The app's module-level registry of kept sessions (``ui.session._kept``), emptied for the test and
    restored after. Use with ``pytestmark = pytest.mark.usefixtures("no_kept_sessions")``."""
    from ui import session as ui_session  # here, not at the top: only UI tests pay for importing gradio

    saved = dict(ui_session._kept)
    ui_session._kept.clear()
    yield
    ui_session._kept.clear()
    ui_session._kept.update(saved)


@pytest.fixture(scope="module")
def one_thread():
    """torch with one intra-op thread for the module (as the app runs it): reference numbers and exact
    argmax ties do not depend on how many cores the machine has. Use with
    ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
