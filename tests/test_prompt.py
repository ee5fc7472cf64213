"""Prompt placeholders: parsing, escapes, malformed syntax, encoding, and a unicode fuzz."""

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dlm_core.models import tiny_random_model
from dlm_core.sampler import PromptError, Segment, encode_prompt, parse_prompt
from dlm_core.sampler.prompt import MAX_PLACEHOLDER

MODEL = tiny_random_model()


@pytest.mark.parametrize(
    ("text", "segments"),
    [
        ("plain text", [Segment(text="plain text")]),
        ("a [MASK] b", [Segment(text="a "), Segment(masks=1), Segment(text=" b")]),
        ("[MASK:3]", [Segment(masks=3)]),
        ("[MASK][MASK:2]x", [Segment(masks=1), Segment(masks=2), Segment(text="x")]),
        ("[MASK:0007]", [Segment(masks=7)]),
        (f"[MASK:{MAX_PLACEHOLDER}]", [Segment(masks=MAX_PLACEHOLDER)]),
        ("\\[MASK] is literal", [Segment(text="[MASK] is literal")]),
        ("say \\[MASK:3] then [MASK]", [Segment(text="say [MASK:3] then "), Segment(masks=1)]),
        ("lower [mask] and [MAS] stay text", [Segment(text="lower [mask] and [MAS] stay text")]),
        ("back\\slash", [Segment(text="back\\slash")]),
    ],
)
def test_parse_prompt(text, segments):
    assert parse_prompt(text) == segments


@pytest.mark.parametrize(
    "text",
    [
        "[MASK:0]",
        "x [MASK:abc] y",
        "[MASK:99999]",
        "[MASK:12345678901234567890]",
        "unclosed [MASK:3",
        "unclosed [MASK",
        "[MASKED]",
        "[MASK:]",
        "[MASK:-1]",
        "[MASK: 3]",
        "[MASK:\u00b2]",  # superscript two is a digit to str.isdigit, not to us
        "[MASK:3.5]",
        "ok [MASK] then bad [MASK:0]",
    ],
)
def test_malformed_placeholders_raise_prompt_error(text):
    with pytest.raises(PromptError) as excinfo:
        parse_prompt(text)
    error = excinfo.value
    assert isinstance(error, ValueError) and error.field == "prompt"
    assert f"[1, {MAX_PLACEHOLDER}]" in str(error) and "character" in str(error)


def test_error_reports_the_character_offset():
    with pytest.raises(PromptError, match="character 4"):
        parse_prompt("abc [MASK:x]")


def test_encode_places_slots_and_appends_generation():
    encoded = encode_prompt(MODEL, "ab[MASK:2]c", gen_length=3)
    mask = MODEL.mask_id
    assert encoded.ids == tuple(MODEL.encode("ab")) + (mask, mask) + tuple(MODEL.encode("c")) + (mask,) * 3
    assert encoded.slots == (2, 3, 5, 6, 7)
    assert encoded.prompt_length == 5
    assert encoded.fixed == (True, True, False, False, True, False, False, False)


def test_encode_pure_infilling_with_zero_gen_length():
    encoded = encode_prompt(MODEL, "[MASK:4]", gen_length=0)
    assert encoded.slots == (0, 1, 2, 3) and encoded.prompt_length == 4


@pytest.mark.parametrize(
    ("text", "gen_length", "field", "fragment"),
    [
        ("", 4, "prompt", "non-whitespace"),
        (" \t\n", 4, "prompt", "non-whitespace"),
        ("has a \u2591 mask glyph", 4, "prompt", "[MASK]"),
        ("abc", 0, "gen_length", "[1, 509]"),
        ("abc", 510, "gen_length", "[0, 509]"),
        ("x" * 513, 0, "prompt", "max_length 512"),
        (b"bytes", 4, "prompt", "string"),
    ],
)
def test_encode_errors(text, gen_length, field, fragment):
    with pytest.raises(PromptError) as excinfo:
        encode_prompt(MODEL, text, gen_length)
    assert excinfo.value.field == field and fragment in str(excinfo.value)


PIECES = st.sampled_from(["[MASK]", "[MASK:", "[MASK:2]", "\\[MASK", "]", ":", "[", "\\", "0", "12", "[MASK:0]"])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(st.text(max_size=12), PIECES), max_size=8), st.integers(0, 6))
def test_fuzz_unicode_prompts_only_ever_raise_prompt_error(parts, gen_length):
    text = "".join(parts)
    try:
        encoded = encode_prompt(MODEL, text, gen_length)
    except PromptError as error:
        assert error.field in ("prompt", "gen_length")
        return
    ids = encoded.ids
    assert len(ids) == encoded.prompt_length + gen_length
    assert all(ids[i] == MODEL.mask_id for i in encoded.slots)
    fixed = [i for i, is_fixed in enumerate(encoded.fixed) if is_fixed]
    assert all(ids[i] != MODEL.mask_id for i in fixed)
    assert list(encoded.slots) == sorted(set(encoded.slots)) and len(encoded.slots) >= 1
    assert encoded.slots[-gen_length:] == tuple(range(len(ids) - gen_length, len(ids))) or gen_length == 0
