"""How many examples a property test draws.

Each test states its full count, ``@settings(max_examples=examples(120))``: the full run (hypothesis's
default profile, 100 examples) draws exactly that; a profile with fewer examples scales it down in
proportion, so the everyday run (profile ``everyday``, 20: see ``conftest.py``) draws a fifth. Read at
import, after ``conftest.py`` has loaded the profile.
"""

from hypothesis import settings

DEFAULT_EXAMPLES = 100  # hypothesis's default profile


def examples(full: int) -> int:
    """``full`` scaled by the loaded profile's ``max_examples`` / 100, at least 1 and at most ``full``."""
    return min(full, max(1, full * settings.default.max_examples // DEFAULT_EXAMPLES))
