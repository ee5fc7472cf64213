"""dlm_core.frontier: the quality bar for parallel decoding, each target able to fail on its own."""

from dlm_core.frontier import quality_shortfalls, reference_row

REFERENCE = {"gen_ppl_under_ar": 40.0, "token_entropy": 4.0, "repeated_4gram_share": 0.05, "known_word_share": 0.9}


def test_each_target_fails_alone_and_the_bounds_are_inclusive():
    assert quality_shortfalls(REFERENCE, REFERENCE) == []
    edge = {"gen_ppl_under_ar": 50.0, "token_entropy": 3.6, "repeated_4gram_share": 0.10, "known_word_share": 0.88}
    assert quality_shortfalls(edge, REFERENCE) == []
    for key, value, word in (("gen_ppl_under_ar", 50.1, "PPL"), ("token_entropy", 3.59, "entropy"),
                             ("repeated_4gram_share", 0.11, "4-grams"), ("known_word_share", 0.87, "known")):
        missed = quality_shortfalls({**edge, key: value}, REFERENCE)
        assert len(missed) == 1 and word in missed[0]


def test_reference_is_the_first_models_one_token_per_step_row():
    one = {"model": "a", "strategy": "low_confidence", "value": 1.0}
    rows = [{"model": "a", "strategy": "threshold", "value": 0.9}, {"model": "b", **{k: v for k, v in one.items() if k != "model"}}, one]
    assert reference_row({"rows": rows}) is one
    assert reference_row({"rows": rows[:2]}) is None
    assert reference_row({}) is None


def test_reference_is_at_the_reports_order_temperature():
    """A sweep over order temperatures has several one-token-per-step rows: the reference is the one at
    the report's (the app's) order temperature, wherever it comes in the list."""
    greedy = {"model": "a", "strategy": "low_confidence", "value": 1.0, "order_temperature": 0.0}
    apps = {**greedy, "order_temperature": 0.2}
    report = {"meta": {"order_temperature": 0.2}, "rows": [greedy, apps]}
    assert reference_row(report) is apps
    assert reference_row({**report, "rows": [greedy]}) is None


def test_reference_is_in_the_first_dtype_swept():
    """With float32 and bfloat16 swept, the targets stay measured against float32, the models' own precision."""
    bf16 = {"model": "a", "strategy": "low_confidence", "value": 1.0, "dtype": "bfloat16"}
    fp32 = {**bf16, "dtype": "float32"}
    assert reference_row({"meta": {"dtype": "float32"}, "rows": [bf16, fp32]}) is fp32
    assert reference_row({"meta": {"dtype": "float32"}, "rows": [bf16]}) is None


def test_reference_is_under_the_first_cache_swept():
    """With the dual and the window cache swept, the targets stay measured against the first (dual)."""
    window = {"model": "a", "strategy": "low_confidence", "value": 1.0, "cache": "window"}
    dual = {**window, "cache": "dual"}
    assert reference_row({"meta": {"cache": "dual"}, "rows": [window, dual]}) is dual
    assert reference_row({"meta": {"cache": "dual"}, "rows": [window]}) is None


def test_a_focused_sweep_is_judged_against_the_reference_it_carries():
    """``frontier.py --reference`` stores another report's reference row; it outranks the report's own rows."""
    own = {"model": "a", "strategy": "low_confidence", "value": 1.0}
    carried = {"model": "ref", "strategy": "low_confidence", "value": 1.0, "source": "runs/frontier.json"}
    assert reference_row({"rows": [own], "reference": carried}) is carried
    assert reference_row({"rows": [own], "reference": None}) is own
