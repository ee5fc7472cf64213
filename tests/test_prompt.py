"""Prompt placeholders: parsing, escapes, malformed syntax, encoding, and a unicode fuzz."""

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis_budget import examples

from dlm_core.models import tiny_random_model
from dlm_core.sampler import PromptError, Segment, canvas_prompt, encode_prompt, parse_prompt, prompt_text
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


@settings(max_examples=examples(150), deadline=None, suppress_health_check=[HealthCheck.too_slow])
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


def test_canvas_prompt_keeps_ids_masks_slots_and_appends():
    ids = MODEL.encode("ROMEO:\nhello")
    encoded = canvas_prompt(MODEL, ids, [8, 7], text="ROMEO:\n[MASK:2]llo")
    assert encoded.slots == (7, 8) and encoded.prompt_length == len(ids) and encoded.text == "ROMEO:\n[MASK:2]llo"
    assert [encoded.ids[i] for i in (7, 8)] == [MODEL.mask_id] * 2
    assert [t for i, t in enumerate(encoded.ids) if i not in (7, 8)] == [t for i, t in enumerate(ids) if i not in (7, 8)]
    appended = encode_prompt(MODEL, encoded, 3)
    assert appended.slots == (7, 8, len(ids), len(ids) + 1, len(ids) + 2) and appended.prompt_length == len(ids)
    assert prompt_text(encoded) == encoded.text and prompt_text("x") == "x"


@pytest.mark.parametrize(
    ("ids", "slots", "field", "words"),
    [
        ([1, 2, 3], [], "slots", "1 to 3 distinct positions"),
        ([1, 2, 3], [3], "slots", "in [0, 2]"),
        ([1, 2, 3], [1, 1], "slots", "distinct"),
        ([1, -1, 3], [0], "ids", "token ids must be integers in"),
        ([1, "a", 3], [0], "ids", "sequences of integers"),
        ([], [0], "ids", "1 to"),
        ([1] * 10_000, [0], "ids", "max_length"),
        ([1, None, 3], [0], "ids", "sequences of integers"),
    ],
)
def test_canvas_prompt_rejects_bad_canvases(ids, slots, field, words):
    with pytest.raises(PromptError) as error:
        canvas_prompt(MODEL, ids, slots)
    assert error.value.field == field and words in str(error.value)


def test_canvas_prompt_rejects_a_kept_mask_and_too_long_a_generation():
    with pytest.raises(PromptError, match="position 1 holds the mask token"):
        canvas_prompt(MODEL, [5, MODEL.mask_id, 6], [0])
    encoded = canvas_prompt(MODEL, [5, 6], [0])
    with pytest.raises(PromptError) as error:
        encode_prompt(MODEL, encoded, MODEL.max_length)
    assert error.value.field == "gen_length"
