"""Break-even, measured forward costs, and the roofline projection (dlm_core.speed) and their HTML."""

import math

import pytest

from dlm_core import speed
from dlm_core.speed import ForwardCall, ForwardCosts, Hardware, LargeModel, StepRecord
from dlm_core.viz.race_explain import break_even_html, lane_explanation_html, projection_html, speedup_figure

# A toy machine with round numbers, so expected values below are plain arithmetic on the formula.
TOY_GPU = Hardware("toy GPU", memory_bandwidth=100.0, peak_flops=1000.0, source="made up")
TOY_MODEL = LargeModel("toy", parameters=10, bytes_per_parameter=2, layers=1, d_model=2, kv_width=1)


def roofline(model, gpu, rows, query, context):
    """The formula, written out independently of the code under test."""
    memory = (model.parameters * model.bytes_per_parameter
              + rows * context * 2 * model.layers * model.kv_width * model.bytes_per_parameter) / gpu.memory_bandwidth
    flops = 2 * model.parameters * rows * query + 4 * model.layers * model.d_model * rows * query * (query + context)
    return max(memory, flops / gpu.peak_flops)


# -- the roofline --------------------------------------------------------------------------------------


def test_one_token_forward_is_memory_bound_and_costs_the_weight_read():
    t = speed.forward_time(TOY_MODEL, TOY_GPU, rows=1, query_tokens=1, context_tokens=0)
    assert t.memory_s == pytest.approx(20 / 100)  # 10 params x 2 bytes / 100 B/s
    assert t.compute_s == pytest.approx((2 * 10 + 4 * 1 * 2 * 1 * 1) / 1000)
    assert not t.compute_bound and t.seconds == pytest.approx(0.2)


def test_many_tokens_make_a_forward_compute_bound():
    t = speed.forward_time(TOY_MODEL, TOY_GPU, rows=1, query_tokens=20, context_tokens=0)
    assert t.compute_bound
    assert t.seconds == pytest.approx((2 * 10 * 20 + 4 * 1 * 2 * 20 * 20) / 1000)


def test_cached_tokens_add_kv_reads_and_attention():
    t = speed.forward_time(TOY_MODEL, TOY_GPU, rows=3, query_tokens=1, context_tokens=50)
    assert t.memory_s == pytest.approx((20 + 3 * 50 * 2 * 1 * 1 * 2) / 100)
    assert t.compute_s == pytest.approx((2 * 10 * 3 + 4 * 2 * 3 * 1 * 51) / 1000)
    assert t.seconds == pytest.approx(roofline(TOY_MODEL, TOY_GPU, 3, 1, 50))


@pytest.mark.parametrize(("field", "kwargs"), [
    ("rows", {"rows": 0, "query_tokens": 1, "context_tokens": 0}),
    ("query_tokens", {"rows": 1, "query_tokens": 0, "context_tokens": 0}),
    ("context_tokens", {"rows": 1, "query_tokens": 1, "context_tokens": -1}),
])
def test_forward_time_names_the_bad_field(field, kwargs):
    with pytest.raises(ValueError, match=field):
        speed.forward_time(TOY_MODEL, TOY_GPU, **kwargs)


def test_h100_ridge_is_where_the_regime_flips():
    model, gpu = speed.LLADA_8B, speed.H100_SXM
    ridge = speed.ridge_tokens(model, gpu)
    assert ridge == pytest.approx(989e12 * 16e9 / (2 * 8e9 * 3.35e12))
    assert 290 < ridge < 300
    assert not speed.forward_time(model, gpu, 1, int(ridge) - 10, 0).compute_bound
    assert speed.forward_time(model, gpu, 1, int(ridge) + 1, 0).compute_bound
    # Memory-bound: 32 tokens cost the same as 1 (weights dominate), which is the whole "5-10x" story.
    one = speed.forward_time(model, gpu, 1, 1, 0).seconds
    assert speed.forward_time(model, gpu, 1, 32, 0).seconds == pytest.approx(one)
    assert one == pytest.approx(16e9 / 3.35e12)


def test_project_race_sums_the_formula_over_each_lanes_calls():
    diffusion = [ForwardCall(1, 12, 0, 0.0), ForwardCall(1, 4, 8, 0.0), ForwardCall(1, 4, 8, 0.0)]
    ar = [ForwardCall(1, 3, 0, 0.0)] + [ForwardCall(1, 1, 3 + i, 0.0) for i in range(8)]
    for batch in (1, 5):
        p = speed.project_race(diffusion, ar, 9, model=TOY_MODEL, ar_model=TOY_MODEL, hardware=TOY_GPU, batch=batch)
        expected_d = sum(roofline(TOY_MODEL, TOY_GPU, batch, c.query_tokens, c.context_tokens) for c in diffusion)
        expected_ar = sum(roofline(TOY_MODEL, TOY_GPU, batch, c.query_tokens, c.context_tokens) for c in ar)
        assert p.diffusion.seconds == pytest.approx(expected_d)
        assert p.ar.seconds == pytest.approx(expected_ar)
        assert p.speedup == pytest.approx(expected_ar / expected_d)
        assert (p.diffusion.forwards, p.ar.forwards) == (3, 9)
    with pytest.raises(ValueError, match="batch"):
        speed.project_race(diffusion, ar, 9, batch=0)
    with pytest.raises(ValueError, match="diffusion_calls"):
        speed.project_race([], ar, 9)


def test_synthetic_calls_follow_blocks_and_caches():
    assert len(speed.synthetic_calls(8, 64, 4, None)) == 2 * 8
    assert all(c.query_tokens == 72 and c.context_tokens == 0 for c in speed.synthetic_calls(8, 64, 4, None))
    dual = speed.synthetic_calls(8, 64, 4, "dual")
    assert [(c.query_tokens, c.context_tokens) for c in dual[:2]] == [(72, 0), (32, 40)]
    prefix = speed.synthetic_calls(8, 64, 4, "prefix")
    assert [(c.query_tokens, c.context_tokens) for c in prefix[8:10]] == [(72, 0), (32, 40)]
    assert len(speed.synthetic_calls(8, 64, 3, "dual")) == 2 * math.ceil(32 / 3)
    # The window cache: a block's first call computes the slots finished since the last block, the block and
    # the suffix window, against the slots finished before; the rest the block against those and the window.
    window = speed.synthetic_calls(8, 64, 4, "window", suffix_window=16)
    assert [(c.query_tokens, c.context_tokens) for c in window[:2]] == [(8 + 32 + 16, 0), (32, 8 + 16)]
    assert [(c.query_tokens, c.context_tokens) for c in window[8:10]] == [(32 + 32, 8), (32, 40)]  # the last block: no window
    ar = speed.autoregressive_calls(5, 10)
    assert len(ar) == 10 and (ar[0].query_tokens, ar[0].context_tokens) == (5, 0)
    assert [c.context_tokens for c in ar[1:]] == list(range(5, 14))
    with pytest.raises(ValueError, match="tokens_per_pass"):
        speed.synthetic_calls(8, 64, 0.5, None)


def test_memory_bound_speedup_tracks_tokens_per_pass_and_compute_bound_does_not():
    # Where the seed's 5-10x holds: one sequence, small forwards (dual cache): k tokens/pass ~ k x.
    curve = dict(speed.speedup_curve(16, 256, "dual"))
    for k in (4, 8, 16):
        assert curve[k] == pytest.approx(k, rel=0.05)
    # Where it does not: no cache on a long canvas (520 tokens per forward > ridge) ...
    long_no_cache = dict(speed.speedup_curve(8, 512, None))
    assert long_no_cache[8] < 0.6 * 8
    # ... a large batch (64 x 32 tokens per forward) ...
    batched = dict(speed.speedup_curve(16, 256, "dual", batch=64))
    assert batched[8] < 8 / 4
    # ... and one token per pass, which can only tie.
    assert curve[1] <= 1.0 + 1e-9


def test_scenarios_cover_both_regimes_for_one_run():
    calls = speed.synthetic_calls(8, 256, 6, "dual")
    scenarios = speed.projection_scenarios(calls, speed.autoregressive_calls(8, 256), 256, prompt_tokens=8, cache="dual")
    assert len(scenarios) == 4
    this_run, batched, other_cache, one = scenarios
    assert this_run.projection.diffusion.compute_bound == 0 and this_run.projection.speedup > 5
    assert batched.projection.diffusion.compute_bound > 0 and batched.projection.speedup < this_run.projection.speedup
    assert "no cache" in other_cache.label
    assert one.tokens_per_pass == 1 and one.projection.speedup <= 1.0 + 1e-9
    assert this_run.tokens_per_forward == pytest.approx(sum(c.query_tokens for c in calls) / len(calls))


# -- break-even ------------------------------------------------------------------------------------


def test_break_even_is_the_cost_ratio_and_predicts_the_time_ratio():
    verdict = speed.break_even(21.0, 10.0, 4.6)
    assert verdict.needed == pytest.approx(2.1) and verdict.cost_ratio == pytest.approx(2.1)
    assert verdict.wins and verdict.speedup == pytest.approx(4.6 / 2.1)
    # N tokens: AR N x 10 ms, diffusion (N / 4.6) x 21 ms.
    n = 230
    assert verdict.speedup == pytest.approx((n * 10.0) / (n / 4.6 * 21.0))
    assert not speed.break_even(21.0, 10.0, 1.5).wins


@pytest.mark.parametrize("field", ["diffusion_ms_per_forward", "ar_ms_per_forward", "tokens_per_forward"])
@pytest.mark.parametrize("bad", [0, -1.0, math.nan, math.inf])
def test_break_even_rejects_bad_numbers(field, bad):
    values = {"diffusion_ms_per_forward": 2.0, "ar_ms_per_forward": 1.0, "tokens_per_forward": 3.0, field: bad}
    with pytest.raises(ValueError, match=field):
        speed.break_even(**values)


def _trace(steps):
    return [StepRecord(seconds, forwards, committed, (ForwardCall(1, 10, 0, seconds / 2),)) for seconds, forwards, committed in steps]


def test_lane_cost_and_race_break_even_use_the_race_clock():
    ar = speed.lane_cost(_trace([(0.01, 1, 1)] * 40))
    diffusion = speed.lane_cost(_trace([(0.03, 1, 4)] * 10))
    assert (ar.forwards, ar.tokens, diffusion.tokens) == (40, 40, 40)
    assert diffusion.ms_per_forward == pytest.approx(30.0) and diffusion.model_ms_per_forward == pytest.approx(15.0)
    verdict = speed.race_break_even(diffusion, ar)
    assert verdict.needed == pytest.approx(3.0) and verdict.achieved == pytest.approx(4.0)
    assert verdict.speedup == pytest.approx(ar.seconds / diffusion.seconds)


def test_forward_costs_break_even_ties_exactly():
    plain = ForwardCosts(128, 8, None, 32, ar_step_ms=2.0, full_ms=5.0, cached_ms=5.0)
    assert plain.break_even == pytest.approx(2.5)
    dual = ForwardCosts(128, 8, "dual", 32, ar_step_ms=2.0, full_ms=10.0, cached_ms=4.0)
    k = dual.break_even
    assert k == pytest.approx(32 * 4.0 / (32 * 2.0 - 10.0 + 4.0))
    assert dual.forward_ms(k) == pytest.approx(k * 2.0)  # a tie: k tokens per forward at k AR steps' cost
    assert dual.forward_ms(32) == pytest.approx(10.0)  # one pass per block: just the refresh
    hopeless = ForwardCosts(128, 8, "dual", 32, ar_step_ms=1.0, full_ms=40.0, cached_ms=4.0)
    assert hopeless.break_even == math.inf


def test_synthetic_window_calls_are_the_ones_the_sampler_makes(tiny_model):
    """The projection's what-if trace of the window cache matches the forwards a real run computes."""
    from dlm_core.sampler import SamplerConfig, run_to_end

    calls = []

    class Recording:
        def __init__(self, model):
            self.model = model

        def __getattr__(self, name):
            return getattr(self.model, name)

        def forward_cached(self, input_ids, cache=None, position_ids=None, logits_at=None):
            calls.append((input_ids.shape[1], 0 if cache is None else cache[0][0].shape[2]))
            return self.model.forward_cached(input_ids, cache, position_ids, logits_at)

    prompt = len(tiny_model.encode("To be"))
    config = SamplerConfig(gen_length=96, steps=24, block_length=32, cache="window", suffix_window=16)
    run_to_end(Recording(tiny_model), "To be", config)
    expected = speed.synthetic_calls(prompt, 96, 4, "window", block=32, suffix_window=16)
    assert calls == [(c.query_tokens, c.context_tokens) for c in expected]


def test_measure_forward_costs_on_the_tiny_pair(tiny_model, tiny_ar_model):
    for cache in (None, "prefix", "dual", "window"):
        costs = speed.measure_forward_costs(tiny_model, tiny_ar_model, 40, cache, warmup=1, repeats=2)
        assert all(v > 0 and math.isfinite(v) for v in (costs.ar_step_ms, costs.full_ms, costs.cached_ms))
        assert (costs.length, costs.cache, costs.block) == (40, cache, 32)
        if cache is None:
            assert costs.cached_ms == costs.full_ms
        assert speed.measure_forward_costs(tiny_model, tiny_ar_model, 40, cache, warmup=1, repeats=2) is costs


@pytest.mark.parametrize(("field", "kwargs"), [
    ("cache", {"length": 16, "cache": "triple"}),
    ("length", {"length": 0}),
    ("length", {"length": 10_000}),
    ("repeats", {"length": 16, "repeats": 0}),
])
def test_measure_forward_costs_names_the_bad_field(tiny_model, tiny_ar_model, field, kwargs):
    with pytest.raises(ValueError, match=field):
        speed.measure_forward_costs(tiny_model, tiny_ar_model, **kwargs)


# -- explanation and its HTML ------------------------------------------------------------------------


def test_explain_lane_from_traces():
    ar_trace = [StepRecord(0.01, 1, 1, (ForwardCall(1, 8 if i == 0 else 1, 0 if i == 0 else 7 + i, 0.009),))
                for i in range(64)]
    d_trace = [StepRecord(0.02, 1, 4, (ForwardCall(1, 72 if i % 8 == 0 else 32, 0 if i % 8 == 0 else 40, 0.018),))
               for i in range(16)]
    explanation = speed.explain_lane(d_trace, tokens=64, prompt_tokens=8, length=64, cache="dual",
                                     ar_trace=ar_trace, ar_tokens=64)
    assert explanation.break_even.needed == pytest.approx(2.0)
    assert explanation.break_even.achieved == pytest.approx(4.0)
    assert len(explanation.scenarios) == 4
    assert explanation.scenarios[0].projection.diffusion.forwards == 16
    assert set(explanation.curves) == {"dual cache, one sequence", "dual cache, batch of 64", "no cache, one sequence"}
    partial = speed.explain_lane(d_trace[:4], tokens=16, prompt_tokens=8, length=64, cache="dual", ar_ms_per_forward=9.0)
    assert partial.scenarios == [] and partial.run_point is None  # nothing to project until the run is complete
    assert explanation.run_point == (4.0, explanation.scenarios[0].projection.speedup)
    assert partial.break_even.needed == pytest.approx(18.0 / 9.0)  # network-only ms vs the measured AR step
    html = lane_explanation_html(explanation)
    assert "needs ≥ 2.0 tokens per pass" in html and "this run does 4.0" in html and "Projection, not a measurement" in html


def test_break_even_html_says_the_numbers_and_escapes():
    html = break_even_html(speed.break_even(21.0, 10.0, 4.6), forwards=28, ar_label="<b>AR</b>")
    assert "2.1x &lt;b&gt;AR&lt;/b&gt;" in html and "<b>AR" not in html
    assert "≥ 2.1 tokens per pass" in html and "this run does 4.6" in html and "ahead" in html
    behind = break_even_html(speed.break_even(21.0, 10.0, 1.05))
    assert "behind" in behind and "0.5x the AR twin" in behind


def test_projection_html_is_labelled_and_names_the_hardware():
    calls = speed.synthetic_calls(8, 128, 4, "dual")
    scenarios = speed.projection_scenarios(calls, speed.autoregressive_calls(8, 128), 128, prompt_tokens=8, cache="dual")
    html = projection_html(scenarios)
    assert "Projection, not a measurement" in html
    assert "H100 SXM" in html and "3.35 TB/s" in html and "datasheet" in html
    assert "memory-bound" in html and "compute-bound" in html
    assert html.count("<tr>") == 1 + len(scenarios)
    assert projection_html([]) == ""


def test_speedup_figure_structure():
    curves = {"dual <cache>": [(1.0, 1.0), (4.0, 3.9)], "no cache": [(1.0, 1.0), (4.0, 2.0)]}
    figure = speedup_figure(curves, run_point=(3.2, 3.1))
    names = [trace["name"] for trace in figure["data"]]
    assert names == ["ideal: k x (memory-bound)", "break-even", "dual <cache>", "no cache", "this run"]
    assert figure["data"][2]["y"] == [1.0, 3.9]
    assert "&lt;cache&gt;" in figure["data"][2]["hovertemplate"]
    assert figure["layout"]["xaxis"]["type"] == "log"


def test_projection_table_matches_the_curves():
    table = speed.projection_table(prompt_tokens=16, lengths=(256,), tokens_per_pass=(1, 8))
    expected = dict(speed.speedup_curve(16, 256, "dual", tokens_per_pass=(1, 8)))
    assert f"| 256 | dual cache | {expected[1]:.2f}x | {expected[8]:.2f}x |" in table
    window = dict(speed.speedup_curve(16, 256, "window", tokens_per_pass=(1, 8)))
    assert f"| 256 | window cache ({speed.SUFFIX_WINDOW}) | {window[1]:.2f}x | {window[8]:.2f}x |" in table
    assert table.count("| 256 |") == 6 and "H100 SXM" in table
