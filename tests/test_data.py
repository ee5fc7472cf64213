"""The corpus: plain play text, deterministic, whole validation plays held out."""

import pytest

from dlm_core.data import VALIDATION_PLAYS, load_plays, markdown_to_play, split_plays


def test_markdown_becomes_plain_play_text():
    markdown = "# Hamlet\n\n## ACT I\n\n_Enter BERNARDO_\n\n**BERNARDO**  \nWho's there?  \nStand\\-ho!\n\n**FRANCISCO**  \nNay.\n"
    text = markdown_to_play(markdown)
    assert text == "Hamlet\n\nACT I\n\n[Enter BERNARDO]\n\nBERNARDO:\nWho's there?\nStand-ho!\n\nFRANCISCO:\nNay.\n"


@pytest.mark.slow  # reads and prepares the whole corpus
def test_split_holds_out_whole_plays_and_no_validation_line_is_trained_on():
    plays = load_plays()
    assert len(plays) >= 36
    train, validation = split_plays(plays)
    assert set(validation) == set(VALIDATION_PLAYS) and not set(train) & set(validation)
    train_text = "\n".join(train.values())
    # Distinctive long lines of each held-out play never occur in the training text.
    for text in validation.values():
        long_lines = [line for line in text.splitlines() if len(line) > 45][:200]
        assert long_lines
        leaked = [line for line in long_lines if line in train_text]
        assert len(leaked) <= 2, leaked  # a stock phrase may recur across plays; whole speeches must not


@pytest.mark.slow  # prepares the whole corpus three times
def test_preparation_is_deterministic():
    assert load_plays()["hamlet"] == load_plays()["hamlet"]
    assert "\nHAMLET:\nTo be, or not to be: that is the question:\n" in load_plays()["hamlet"]
