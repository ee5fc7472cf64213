"""Shared fixtures: the tiny random models build in milliseconds, so every test gets its own."""

import pytest

from dlm_core.models import tiny_random_model


@pytest.fixture
def tiny_model():
    return tiny_random_model(seed=0)


@pytest.fixture
def tiny_ar_model():
    return tiny_random_model(seed=0, causal=True)
