"""scripts/pin_revisions.py: every hub entry checked against a stand-in of the Hub's model_info (the
real Hub cannot be reached from here; offline the script must stop at once with the reason)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from dlm_core.models import hub, registry

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("pin_revisions", ROOT / "scripts" / "pin_revisions.py")
pin_revisions = importlib.util.module_from_spec(_spec)
sys.modules["pin_revisions"] = pin_revisions
_spec.loader.exec_module(pin_revisions)

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def test_every_hub_entry_and_no_builtin_is_checked():
    keys = {spec.key for spec in pin_revisions.hub_entries()}
    assert {"llada-8b-instruct", "diffusiongemma-26b-a4b-it", "llada2.1-mini", "modernbert-chat"} <= keys
    assert not {spec.key for spec in registry.list_models() if spec.builtin} & keys


def test_statuses_pinned_unpinned_moved_gone_and_remote_code():
    entries = {spec.key: spec for spec in pin_revisions.hub_entries()}
    seen = []

    def model_info(repo_id, revision):
        seen.append((repo_id, revision))
        if repo_id == entries["modernbert-chat"].repo_id:
            return SimpleNamespace(sha=COMMIT, id="someone-else/ModernBERT-large-chat")
        if repo_id == entries["llada2.1-mini"].repo_id:
            raise LookupError("404 gone")  # what the Hub client raises is an HTTP error subclass
        sha = hub.TRUSTED_REMOTE_CODE.get(repo_id, COMMIT)
        return SimpleNamespace(sha=sha, id=repo_id)

    rows = {spec.key: pin_revisions.check(spec, model_info) for spec in entries.values()}
    assert rows["llada-8b-instruct"]["status"] == "pinned"  # the allow-listed commit, pinned in the registry
    assert rows["diffusiongemma-26b-a4b-it"]["status"] == f"not pinned: set revision={COMMIT!r}"  # tracks main
    assert rows["modernbert-chat"]["status"].startswith("moved: the Hub serves it as someone-else/")
    assert rows["llada2.1-mini"]["status"].startswith("not found at main: LookupError: 404 gone")
    assert (entries["diffusiongemma-26b-a4b-it"].repo_id, "main") in seen
    # A remote-code entry whose commit is not on the allow-list says so (and nothing edits the list).
    spec = entries["llada-8b-instruct"]
    other = pin_revisions.check(spec, lambda repo_id, revision: SimpleNamespace(sha=COMMIT, id=repo_id))
    assert "add this commit to hub.TRUSTED_REMOTE_CODE" in other["status"]


def test_exit_status_and_json(tmp_path, capsys):
    out = tmp_path / "pins.json"
    code = pin_revisions.main(["--json", str(out)], model_info=lambda repo_id, revision: SimpleNamespace(sha=COMMIT, id=repo_id))
    assert code == 1  # something is not pinned yet
    assert "not pinned" in capsys.readouterr().out and '"commit"' in out.read_text()


def test_offline_stops_at_once_with_the_reason(monkeypatch, capsys):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert pin_revisions.main([]) == 2
    assert "offline mode is on" in capsys.readouterr().err


@pytest.mark.parametrize("flag", ["--nope"])
def test_bad_flag_is_named(flag, capsys):
    with pytest.raises(SystemExit):
        pin_revisions.main([flag])
    assert flag in capsys.readouterr().err
