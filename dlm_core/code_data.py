"""The code corpus: the Python standard library of the running interpreter (PSF licence), as source files.

Which files (``collect_stdlib``): every ``.py`` under ``sysconfig.get_paths()["stdlib"]``, sorted by path,
except

* test suites and tools that are not library code: any directory named ``test`` or ``tests`` (this covers
  ``lib2to3/tests`` and its deliberately broken Python 2 data), ``idlelib``, ``site-packages``;
* data rather than code: ``encodings`` (generated codec tables), and the build-specific generated files
  ``_sysconfigdata_*.py`` and ``config-*/`` (they hold this machine's compiler flags and paths);
* files that are not valid UTF-8, do not parse (``ast.parse``), are empty, or are larger than
  ``MAX_FILE_BYTES`` (generated tables such as ``pydoc_data/topics.py``);
* exact duplicates: the first path in sorted order keeps the content, later copies are dropped, so no
  text is trained on twice or appears in both splits.

The split holds out whole modules, chosen by a hash of the path relative to the stdlib (not by content,
not by a random draw): the same module is held out on every machine and every Python version that has it,
and about ``VALIDATION_PERMILLE`` / 1000 of the files are held out.

A manifest (``manifest.json``: Python version, each file's path relative to the stdlib, its sha256 and its
split) records the corpus, so it can be rebuilt and checked (``verify_manifest``) elsewhere.
Text is kept byte for byte (tabs, trailing spaces, ``\\r\\n`` if any): the tokenizer must reproduce it.
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
import platform
import sysconfig
from dataclasses import dataclass, field
from pathlib import Path

MAX_FILE_BYTES = 200_000
VALIDATION_PERMILLE = 30  # ~3 % of modules held out
EXCLUDED_DIRS = frozenset({"test", "tests", "idlelib", "site-packages", "encodings", "__pycache__"})
LICENCE = "Python Software Foundation License (PSF-2.0), the CPython standard library"


@dataclass(frozen=True)
class SourceFile:
    """One stdlib module: its path relative to the stdlib root (posix), its text and the sha256 of its bytes."""

    path: str
    text: str
    sha256: str

    @property
    def held_out(self) -> bool:
        return is_held_out(self.path)


@dataclass
class StdlibCorpus:
    """The kept files in path order, and why each dropped file was dropped (reason -> paths)."""

    root: Path
    files: list[SourceFile]
    excluded: dict[str, list[str]] = field(default_factory=dict)

    def split(self) -> tuple[dict[str, str], dict[str, str]]:
        """(train, validation) as path -> text; validation modules are held out whole."""
        train = {f.path: f.text for f in self.files if not f.held_out}
        validation = {f.path: f.text for f in self.files if f.held_out}
        if not validation or not train:
            raise RuntimeError(f"the split of {len(self.files)} stdlib files left an empty side; the corpus is too small")
        return train, validation


def stdlib_root() -> Path:
    """The running interpreter's standard library directory."""
    return Path(sysconfig.get_paths()["stdlib"])


def is_held_out(relative_path: str) -> bool:
    """Validation iff the first 8 bytes of sha256(path) mod 1000 < ``VALIDATION_PERMILLE`` (deterministic)."""
    digest = hashlib.sha256(relative_path.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % 1000 < VALIDATION_PERMILLE


def walk_python_files(root: Path) -> tuple[list[Path], list[str]]:
    """(every ``.py`` under ``root`` outside ``EXCLUDED_DIRS``, the excluded directories), both sorted, relative.

    The excluded directories are pruned, not filtered afterwards: ``site-packages`` alone can hold tens of
    thousands of files (torch, transformers), and walking them would dominate ``prepare``.
    """
    paths: list[Path] = []
    pruned: list[str] = []
    for directory, subdirectories, names in os.walk(root):
        relative_dir = Path(directory).relative_to(root)
        pruned.extend((relative_dir / d).as_posix() + "/" for d in subdirectories if d in EXCLUDED_DIRS)
        subdirectories[:] = [d for d in subdirectories if d not in EXCLUDED_DIRS]
        paths.extend(relative_dir / name for name in names if name.endswith(".py"))
    return sorted(paths, key=Path.as_posix), sorted(pruned)


def excluded_by_path(relative: Path) -> str | None:
    """Why a file outside the excluded directories is still not library code, or None if it is a candidate."""
    if relative.name.startswith("_sysconfigdata_") or (len(relative.parts) > 1 and relative.parts[0].startswith("config-")):
        return "build-specific generated file"
    return None


def read_source(path: Path) -> tuple[str | None, str | None]:
    """(text, None) for a usable file, else (None, reason): too large, not UTF-8, empty, or does not parse."""
    data = path.read_bytes()
    if len(data) > MAX_FILE_BYTES:
        return None, f"larger than {MAX_FILE_BYTES} bytes"
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None, "not valid UTF-8"
    if not text.strip():
        return None, "empty"
    try:
        ast.parse(text, filename=str(path))
    except (SyntaxError, ValueError):  # ValueError: null bytes in the source
        return None, "does not parse"
    return text, None


def collect_stdlib(root: Path | None = None) -> StdlibCorpus:
    """Every usable, distinct ``.py`` file under ``root`` (default: this interpreter's stdlib), sorted by path."""
    root = Path(root) if root is not None else stdlib_root()
    if not root.is_dir():
        raise FileNotFoundError(f"stdlib root {root} is not a directory")
    files: list[SourceFile] = []
    relatives, pruned = walk_python_files(root)
    excluded: dict[str, list[str]] = {"excluded directory": pruned} if pruned else {}
    first_with_hash: dict[str, str] = {}
    for relative in relatives:
        path = root / relative
        reason = excluded_by_path(relative)
        text = None
        if reason is None and path.is_file():
            text, reason = read_source(path)
        elif reason is None:
            reason = "not a regular file"
        if reason is None:
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            if digest in first_with_hash:
                reason = "duplicate"
            else:
                first_with_hash[digest] = relative.as_posix()
                files.append(SourceFile(relative.as_posix(), text, digest))
        if reason is not None:
            excluded.setdefault(reason, []).append(relative.as_posix())
    return StdlibCorpus(root, files, excluded)


def manifest(corpus: StdlibCorpus) -> dict:
    """The corpus as data: interpreter version, licence, filters, and per file its path, sha256, bytes and split."""
    return {
        "python_version": platform.python_version(),
        "implementation": platform.python_implementation(),
        "licence": LICENCE,
        "filters": {
            "excluded_dirs": sorted(EXCLUDED_DIRS),
            "max_file_bytes": MAX_FILE_BYTES,
            "validation_permille": VALIDATION_PERMILLE,
        },
        "files": [
            {
                "path": f.path,
                "sha256": f.sha256,
                "bytes": len(f.text.encode("utf-8")),
                "split": "validation" if f.held_out else "train",
            }
            for f in corpus.files
        ],
        "excluded": {reason: len(paths) for reason, paths in sorted(corpus.excluded.items())},
    }


def write_manifest(corpus: StdlibCorpus, path: Path) -> dict:
    data = manifest(corpus)
    path.write_text(json.dumps(data, indent=1) + "\n")
    return data


def verify_manifest(data: dict, root: Path | None = None) -> list[str]:
    """The manifest's files that are missing under ``root`` or whose bytes no longer hash the same (empty: all match)."""
    root = Path(root) if root is not None else stdlib_root()
    problems = []
    for entry in data["files"]:
        path = root / entry["path"]
        if not path.is_file():
            problems.append(f"{entry['path']}: missing")
        elif hashlib.sha256(path.read_bytes()).hexdigest() != entry["sha256"]:
            problems.append(f"{entry['path']}: sha256 differs")
    return problems
