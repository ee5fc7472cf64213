"""The quality bar for parallel decoding, read from a frontier report (``benchmarks/frontier.py``).

Torch-free, so the benchmark, the viz layer and the UI share one definition. A decoding result is a
row of the report (``gen_ppl_under_ar``, ``token_entropy``, ``repeated_4gram_share``,
``known_word_share``); it is "as good as one token per step" when it meets every target against the
reference row: the first model of the report (the shipped model) decoding one token per step
(``low_confidence``, 1 token per step) at the same temperature, top-p and order temperature, in the
first dtype and with the first key/value cache of the sweep (float32 and the dual cache by default).
"""

from __future__ import annotations

MAX_PPL_RATIO = 1.25  # generative perplexity at most 1.25x the reference's
MIN_ENTROPY_RATIO = 0.9  # token entropy at least 0.9x the reference's (looping lowers it)
MAX_REPEATED_4GRAMS = 0.10
MAX_KNOWN_WORD_DROP = 0.02  # at most 2 points fewer words that occur in the training plays


DOMAIN_LABELS = {"known_word_share": "known words", "parse_share": "functions that parse"}


def quality_shortfalls(row: dict, reference: dict, domain: str = "known_word_share") -> list[str]:
    """Which quality targets a decoding result (``gen_ppl_under_ar``, ``token_entropy``,
    ``repeated_4gram_share`` and the ``domain`` share: ``known_word_share`` for prose, ``parse_share``
    for code, at most ``MAX_KNOWN_WORD_DROP`` below the reference's) misses against ``reference``; [] = all met."""
    missed = []
    if row["gen_ppl_under_ar"] > MAX_PPL_RATIO * reference["gen_ppl_under_ar"]:
        missed.append(f"gen PPL > {MAX_PPL_RATIO:g}x")
    if row["token_entropy"] < MIN_ENTROPY_RATIO * reference["token_entropy"]:
        missed.append(f"entropy < {MIN_ENTROPY_RATIO:g}x")
    if row["repeated_4gram_share"] > MAX_REPEATED_4GRAMS:
        missed.append(f"repeated 4-grams > {MAX_REPEATED_4GRAMS:.0%}")
    if row[domain] < reference[domain] - MAX_KNOWN_WORD_DROP:
        missed.append(f"{DOMAIN_LABELS[domain]} < reference - {MAX_KNOWN_WORD_DROP * 100:g} points")
    return missed


def reference_row(report: dict) -> dict | None:
    """The first model's one-token-per-step row of a frontier report, or None if it has none; a report
    measured against another report's reference (``frontier.py --reference``) carries it as ``reference``."""
    if report.get("reference"):
        return report["reference"]
    rows = report.get("rows") or []
    if not rows:
        return None
    first = rows[0].get("model")
    meta = report.get("meta", {})
    order = meta.get("order_temperature")  # the app's; rows at other order temperatures are not
    dtype = meta.get("dtype")  # the first dtype swept (float32, the models' training precision)
    cache = meta.get("cache")  # the first cache swept
    for row in rows:
        if (row.get("model") == first and row.get("strategy") == "low_confidence" and row.get("value") == 1.0
                and row.get("order_temperature", order) == order and row.get("dtype", dtype) == dtype
                and row.get("cache", cache) == cache):
            return row
    return None
