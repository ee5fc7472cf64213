"""Check every hub entry of the model list against the Hugging Face Hub, on a machine with internet.

    python scripts/pin_revisions.py            # a table: repo, revision in the registry, commit on the Hub
    python scripts/pin_revisions.py --json F   # the same as JSON

Issue 14 asks for each hub model to be pinned to a commit and for moved hub ids to be corrected. Both
need the Hub, which the machines this project is built on can never reach; this is the one command a
maintainer with internet runs to finish it. For every entry (``dlm_core.models.registry``) that is not
a built-in model it asks the Hub API for the repository at the registry's revision (``main`` where none
is pinned yet) and reports: the commit it resolves to, whether the registry already pins exactly that
commit, whether the repository has moved (the Hub answers with another id) or is gone, and, for entries
that run remote code, whether the commit is on ``hub.TRUSTED_REMOTE_CODE`` (remote code must be reviewed
before it is trusted, so this script never edits the allow-list). Offline it stops at once with the
reason (one probe, ``hub.hub_unreachable_reason``), exit status 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dlm_core.models import hub, registry  # noqa: E402

COMMIT_LENGTH = 40


def hub_entries() -> list[registry.ModelSpec]:
    """The model list's entries that live on the Hub (not built-in, not a local folder)."""
    return [spec for spec in registry.list_models() if not spec.builtin and spec.repo_id and not hub.is_local_path(spec.repo_id)]


def check(spec: registry.ModelSpec, model_info) -> dict:
    """One entry against the Hub: ``model_info(repo_id, revision)`` is ``huggingface_hub.HfApi.model_info``."""
    asked = spec.revision or "main"
    row = {"key": spec.key, "repo_id": spec.repo_id, "registry_revision": spec.revision, "remote_code": spec.trust_remote_code}
    try:
        info = model_info(spec.repo_id, revision=asked)
    except Exception as error:  # RepositoryNotFoundError, RevisionNotFoundError, gated, HTTP errors
        return {**row, "status": f"not found at {asked}: {type(error).__name__}: {error}"}
    commit, hub_id = info.sha, info.id
    pinned = spec.revision is not None and len(spec.revision) == COMMIT_LENGTH
    if hub_id != spec.repo_id:
        status = f"moved: the Hub serves it as {hub_id}"
    elif pinned and spec.revision == commit:
        status = "pinned"
    else:
        status = f"not pinned: set revision={commit!r}"
    if spec.trust_remote_code and hub.TRUSTED_REMOTE_CODE.get(spec.repo_id) != commit:
        status += "; remote code: review it, then add this commit to hub.TRUSTED_REMOTE_CODE"
    return {**row, "hub_id": hub_id, "commit": commit, "status": status}


def main(argv: list[str] | None = None, model_info=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", default=None, help="also write the rows here")
    args = parser.parse_args(argv)
    if model_info is None:
        reason = hub.hub_unreachable_reason()
        if reason:
            print(f"cannot check the hub entries: {reason}", file=sys.stderr)
            return 2
        from huggingface_hub import HfApi

        model_info = HfApi().model_info
    rows = [check(spec, model_info) for spec in hub_entries()]
    for row in rows:
        print(f"{row['key']:<28} {row['repo_id']:<45} {row['status']}")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")
    return 0 if all(row["status"] == "pinned" for row in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
