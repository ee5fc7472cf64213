"""The code corpus: which stdlib files are kept, the held-out split, dedup, the manifest, exact round trips."""

import hashlib
import json
import platform
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from dlm_core import code_data, train
from dlm_core.code_data import MAX_FILE_BYTES, collect_stdlib, is_held_out, verify_manifest, write_manifest

GOOD = 'def add(a, b):\n    """Add."""\n    return a + b\n'


def held_out_name(index: int, held_out: bool) -> str:
    """The index-th module name ``modN.py`` whose split is ``held_out`` (fixtures need both splits)."""
    names = (f"mod{i}.py" for i in range(100_000))
    return [name for name in names if is_held_out(name) == held_out][:index + 1][index]


def write(root: Path, relative: str, content: str | bytes) -> None:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)


def fake_stdlib(root: Path) -> dict[str, str]:
    """A tiny stdlib with one file per filter; returns the files that must be kept (path -> text)."""
    kept = {
        held_out_name(0, False): GOOD,
        held_out_name(1, False): "import os\r\n\r\nprint(os.sep)   \r\n",  # \r\n and trailing spaces kept as they are
        held_out_name(0, True): "class Ünïcode:\n    x = 'π ≈ 3.14'\n",
        "json/decoder.py": "if True:\n\tpass\n",  # tab indentation kept
    }
    for path, text in kept.items():
        write(root, path, text)
    write(root, "test/test_add.py", GOOD + "# test\n")
    write(root, "json/tests/test_x.py", GOOD + "# tests\n")
    write(root, "lib2to3/tests/data/py2.py", "print 'hello'\n")
    write(root, "idlelib/editor.py", GOOD + "# idle\n")
    write(root, "site-packages/numpy/core.py", GOOD + "# numpy\n")
    write(root, "encodings/cp1252.py", "decoding_table = ('\\x00')\n")
    write(root, "_sysconfigdata__linux_x86_64-linux-gnu.py", "build_time_vars = {}\n")
    write(root, "config-3.11-x86_64-linux-gnu/python-config.py", "import sys\n")
    write(root, "latin1.py", "name = 'caf\xe9'\n".encode("latin-1"))
    write(root, "broken.py", "def f(:\n")
    write(root, "tabs_and_spaces.py", "if x:\n    a = 1\n\tb = 2\n")  # TabError is a SyntaxError
    write(root, "nulls.py", b"x = 1\x00\n")
    write(root, "empty/__init__.py", "")
    write(root, "huge_table.py", "x = 1\n" * (MAX_FILE_BYTES // 6 + 1))
    write(root, "zz_copy.py", GOOD)  # same bytes as an earlier path: a duplicate
    write(root, "notes.txt", GOOD)  # not a .py file
    return kept


def test_filters_keep_only_distinct_parseable_library_modules(tmp_path):
    kept = fake_stdlib(tmp_path)
    corpus = collect_stdlib(tmp_path)
    assert {f.path: f.text for f in corpus.files} == kept
    assert [f.path for f in corpus.files] == sorted(kept)
    assert corpus.excluded == {
        "excluded directory": ["encodings/", "idlelib/", "json/tests/", "lib2to3/tests/", "site-packages/", "test/"],
        "build-specific generated file": ["_sysconfigdata__linux_x86_64-linux-gnu.py",
                                          "config-3.11-x86_64-linux-gnu/python-config.py"],
        "not valid UTF-8": ["latin1.py"],
        "does not parse": ["broken.py", "nulls.py", "tabs_and_spaces.py"],
        "empty": ["empty/__init__.py"],
        f"larger than {MAX_FILE_BYTES} bytes": ["huge_table.py"],
        "duplicate": ["zz_copy.py"],
    }


def test_dedup_keeps_the_first_path_and_drops_every_later_copy(tmp_path):
    for name in ("b.py", "a.py", "c/d.py"):
        write(tmp_path, name, GOOD)
    write(tmp_path, "e.py", GOOD + "\n")  # one byte more: distinct
    corpus = collect_stdlib(tmp_path)
    assert [f.path for f in corpus.files] == ["a.py", "e.py"]
    assert corpus.excluded["duplicate"] == ["b.py", "c/d.py"]
    assert len({f.sha256 for f in corpus.files}) == len(corpus.files)


def test_held_out_split_is_whole_modules_chosen_by_path_only(tmp_path):
    first, second = tmp_path / "one", tmp_path / "two"
    kept = fake_stdlib(first)
    for index, path in enumerate(kept):  # same paths, different contents, a different root
        write(second, path, f"value = {index}\n")
    train_a, validation_a = collect_stdlib(first).split()
    train_b, validation_b = collect_stdlib(second).split()
    assert set(validation_a) == set(validation_b) == {held_out_name(0, True)}
    assert set(train_a) == set(train_b) and not set(train_a) & set(validation_a)
    assert {**train_a, **validation_a} == kept


def test_held_out_share_is_about_three_percent_and_independent_of_the_hash_seed():
    paths = [f"pkg{i % 7}/module_{i}.py" for i in range(20_000)]
    share = sum(map(is_held_out, paths)) / len(paths)
    assert 0.025 < share < 0.035
    # Python's hash() changes with PYTHONHASHSEED; the split must not (another machine, another run).
    script = "import sys; from dlm_core.code_data import is_held_out as h; print(sum(1 << i for i, p in enumerate(sys.argv[1:]) if h(p)))"
    expected = sum(1 << i for i, path in enumerate(paths[:500]) if is_held_out(path))
    for seed in ("1", "2"):
        result = subprocess.run([sys.executable, "-c", script, *paths[:500]], capture_output=True, text=True, check=True,
                                env={"PYTHONHASHSEED": seed, "PYTHONPATH": str(Path(__file__).parents[1])})
        assert int(result.stdout) == expected


def test_split_refuses_a_corpus_with_an_empty_side(tmp_path):
    write(tmp_path, held_out_name(0, False), GOOD)
    with pytest.raises(RuntimeError, match="empty side"):
        collect_stdlib(tmp_path).split()
    with pytest.raises(FileNotFoundError, match="not a directory"):
        collect_stdlib(tmp_path / "missing")


def test_manifest_records_version_hashes_and_split_and_detects_changes(tmp_path):
    root = tmp_path / "lib"
    kept = fake_stdlib(root)
    corpus = collect_stdlib(root)
    data = write_manifest(corpus, tmp_path / "manifest.json")
    assert json.loads((tmp_path / "manifest.json").read_text()) == data
    assert data["python_version"] == platform.python_version() and "PSF" in data["licence"]
    assert [entry["path"] for entry in data["files"]] == sorted(kept)
    for entry in data["files"]:
        raw = (root / entry["path"]).read_bytes()
        assert entry["sha256"] == hashlib.sha256(raw).hexdigest() and entry["bytes"] == len(raw)
        assert entry["split"] == ("validation" if entry["path"] == held_out_name(0, True) else "train")
    assert data["excluded"]["duplicate"] == 1 and data["excluded"]["excluded directory"] == 6
    assert verify_manifest(data, root) == []
    write(root, "json/decoder.py", "if True:\n        pass  \n")
    (root / held_out_name(0, True)).unlink()
    assert verify_manifest(data, root) == ["json/decoder.py: sha256 differs", f"{held_out_name(0, True)}: missing"]


def stdlib_sources(names: list[str]) -> list[str]:
    return [(code_data.stdlib_root() / name).read_text(encoding="utf-8") for name in names]


def test_byte_level_bpe_round_trips_real_stdlib_files_exactly():
    tokenizer = train.train_tokenizer(stdlib_sources(["textwrap.py", "bisect.py", "colorsys.py"]), vocab_size=600)
    unseen = stdlib_sources(["heapq.py", "tabnanny.py", "json/encoder.py"])
    unseen.append(GOOD + "\t\t  mixed\t indentation  \r\n\n\n\x0c# form feed, 'ünïcödé', 日本語, emoji 🐍\n")
    for text in unseen:
        ids = tokenizer.encode(text, add_special_tokens=False)
        assert tokenizer.decode(ids) == text
        assert tokenizer.mask_token_id not in ids and tokenizer.eos_token_id not in ids
    assert len(tokenizer.encode(tokenizer.mask_token, add_special_tokens=False)) == 1
    assert len(tokenizer.encode(tokenizer.eos_token, add_special_tokens=False)) == 1


def test_prepare_python_writes_manifest_tokenizer_and_exact_token_streams(tmp_path, monkeypatch):
    root = tmp_path / "lib"
    kept = fake_stdlib(root)
    monkeypatch.setattr(code_data, "stdlib_root", lambda: root)
    data = tmp_path / "code-data"
    train.main(["prepare", "--corpus", "python", "--data", str(data), "--vocab-size", "300"])
    stats = json.loads((data / "stats.json").read_text())
    manifest = json.loads((data / "manifest.json").read_text())
    held_out = held_out_name(0, True)
    tokenizer = train.load_tokenizer(data)
    assert stats["validation_plays"] == [held_out] and stats["vocab_size"] == len(tokenizer) <= 300
    assert stats["train"]["plays"] == len(kept) - 1 and [e["path"] for e in manifest["files"]] == sorted(kept)
    for split, paths in (("train", [p for p in sorted(kept) if p != held_out]), ("validation", [held_out])):
        ids = np.load(data / f"{split}.npy")
        assert stats[split]["tokens"] == ids.size
        assert stats[split]["chars"] == sum(len(kept[p]) + 1 for p in paths)
        # Each file, then end-of-text, in path order; decoding gives the files back byte for byte.
        expected = "".join(kept[p] + tokenizer.eos_token for p in paths)
        assert tokenizer.decode(ids.tolist()) == expected
        assert int((ids == tokenizer.eos_token_id).sum()) == len(paths)


def test_prepare_defaults_stay_shakespeare_and_the_corpus_picks_the_data_folder(tmp_path, monkeypatch, capsys):
    calls = []
    monkeypatch.setattr(train, "prepare", lambda *args: calls.append(args))
    monkeypatch.chdir(tmp_path)
    train.main(["prepare"])
    train.main(["prepare", "--corpus", "python"])
    train.main(["prepare", "--corpus", "python", "--data", "elsewhere", "--vocab-size", "512"])
    assert calls == [(Path("runs/data"), 4096, "shakespeare"), (Path("runs/code-data"), 4096, "python"),
                     (Path("elsewhere"), 512, "python")]
    with pytest.raises(SystemExit) as error:
        train.main(["prepare", "--corpus", "cobol"])
    assert error.value.code == 2 and "--corpus" in capsys.readouterr().err
    with pytest.raises(ValueError, match="corpus must be one of"):
        train.load_corpus("cobol", tmp_path)


@pytest.mark.slow  # reads and parses the whole standard library (~550 files)
def test_real_stdlib_corpus_is_library_code_held_out_by_module_and_matches_its_manifest(tmp_path):
    corpus = collect_stdlib()
    train_files, validation = corpus.split()
    assert len(corpus.files) > 400 and 0.01 < len(validation) / len(corpus.files) < 0.06
    assert not any(part in code_data.EXCLUDED_DIRS for f in corpus.files for part in f.path.split("/")[:-1])
    assert all(0 < len(f.text.encode("utf-8")) <= MAX_FILE_BYTES for f in corpus.files)
    assert len({f.sha256 for f in corpus.files}) == len(corpus.files)
    assert "textwrap.py" in {f.path for f in corpus.files} | set(validation)
    data = write_manifest(corpus, tmp_path / "manifest.json")
    assert verify_manifest(data) == []
    assert {e["path"] for e in data["files"] if e["split"] == "validation"} == set(validation)
