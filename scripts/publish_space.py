"""Publish the app to a Hugging Face Space: only what the Space runs, large files the LFS way.

    python scripts/publish_space.py --repo USER/SPACE --dry-run   # list what would be uploaded; no network
    python scripts/publish_space.py --repo USER/SPACE             # create the Space if needed, upload

The upload set is defined once, by ``ALLOW`` and ``IGNORE`` below, and ``space_files`` evaluates it
with huggingface_hub's own matcher (``filter_repo_objects``, plus the library's default ignores such
as ``.git/``), exactly as ``HfApi.upload_folder`` will: the app (``app.py``, ``ui/``, ``dlm_core/``),
everything in ``assets/`` (the built-in models, examples, stored benchmark and frontier data, the
stylesheet, the README's screenshot), ``requirements.txt`` (what Spaces installs) and ``README.md``
(its front matter is the Space's configuration). Never ``runs/`` (70 MB training checkpoints),
``tests/``, ``benchmarks/``, ``scripts/``, caches or hidden files.

Large files. Spaces refuse a git push of a file over 10 MiB that is not in Git LFS, and each built-in
``model.safetensors`` is 11.7 MB. ``upload_folder`` does not push git objects: it asks the hub's
``preupload`` endpoint how to send each file, and the hub answers LFS (stored through Xet where the
``hf_xet`` package is installed) for every file over 10 MiB and for binary files such as
``*.safetensors``; only small text files become plain git blobs. So this repository needs no
``.gitattributes`` with ``filter=lfs`` (its clones have no LFS server, and such a file would break
plain ``git`` here), and none is uploaded: the Space keeps the ``.gitattributes`` the hub created
with it.

Also: ``delete_patterns`` removes files under ``ui/``, ``dlm_core/`` and ``assets/`` that are on the
Space but no longer here (a renamed module cannot linger). The token comes from ``--token``,
``HF_TOKEN`` or ``hf auth login``; a missing token, a refused one or no network gives a one-line
message and exit status 2 (usage, token) or 1 (hub unreachable or refused).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]

# The upload set (patterns as upload_folder reads them: fnmatch on the path relative to the repository
# root; "*" also matches "/").
ALLOW = ["app.py", "requirements.txt", "README.md", "ui/*", "dlm_core/*", "assets/*"]
IGNORE = ["*__pycache__*", "*.pyc", "*.pyo", ".*", "*/.*", "*.egg-info*"]
# Files on the Space under these that are not in the upload are deleted by the same commit.
DELETE = ["ui/*", "dlm_core/*", "assets/*"]
LFS_THRESHOLD = 10 * 1024 * 1024  # Spaces refuse a plain git file over 10 MiB


@dataclass(frozen=True)
class SpaceFile:
    path: str  # relative, with "/"
    size: int

    @property
    def lfs(self) -> bool:
        """Over 10 MiB: the hub must store it in LFS (upload_folder does so; a git push would be refused)."""
        return self.size > LFS_THRESHOLD


def space_files(root: Path = ROOT) -> list[SpaceFile]:
    """Every file ``upload_folder(folder_path=root, allow_patterns=ALLOW, ignore_patterns=IGNORE)``
    uploads, sorted, computed the way upload_folder computes it."""
    from huggingface_hub.utils import DEFAULT_IGNORE_PATTERNS, filter_repo_objects

    root = Path(root).resolve()
    files = {path.relative_to(root).as_posix(): path for path in sorted(root.glob("**/*")) if path.is_file()}
    chosen = filter_repo_objects(files, allow_patterns=ALLOW, ignore_patterns=IGNORE + DEFAULT_IGNORE_PATTERNS)
    return [SpaceFile(path, files[path].stat().st_size) for path in sorted(chosen)]


def upload_arguments(repo: str, root: Path = ROOT, message: str | None = None) -> dict[str, Any]:
    """The keyword arguments of the one ``HfApi.upload_folder`` call."""
    return {
        "repo_id": repo,
        "repo_type": "space",
        "folder_path": str(Path(root).resolve()),
        "allow_patterns": list(ALLOW),
        "ignore_patterns": list(IGNORE),
        "delete_patterns": list(DELETE),
        "commit_message": message or "Publish Diffusion Canvas",
    }


def describe(files: list[SpaceFile]) -> str:
    lines = [f"{'LFS' if f.lfs else '   '} {f.size:>12,}  {f.path}" for f in files]
    total, lfs = sum(f.size for f in files), [f for f in files if f.lfs]
    lines.append(
        f"{len(files)} files, {total / 1e6:.1f} MB; {len(lfs)} over 10 MiB (stored in LFS by the hub: "
        "upload_folder asks its preupload endpoint, which answers LFS for them)"
    )
    return "\n".join(lines)


class PublishError(Exception):
    def __init__(self, message: str, status: int = 1):
        super().__init__(message)
        self.message, self.status = message, status


def _hub_error(error: Exception, repo: str) -> PublishError:
    """A one-line message for what went wrong talking to the hub."""
    from huggingface_hub.errors import HfHubHTTPError, LocalTokenNotFoundError, OfflineModeIsEnabled

    if isinstance(error, LocalTokenNotFoundError):
        return PublishError("no Hugging Face token: run `hf auth login` or set HF_TOKEN (write access)", 2)
    if isinstance(error, OfflineModeIsEnabled):
        return PublishError("HF_HUB_OFFLINE is set: unset it to publish", 2)
    if isinstance(error, HfHubHTTPError):
        status = getattr(getattr(error, "response", None), "status_code", None)
        if status in (401, 403):
            return PublishError(f"the hub refused the token for {repo} (HTTP {status}): it needs write access", 2)
        return PublishError(f"the hub answered an error for {repo}: {str(error).splitlines()[0]}")
    name = type(error).__name__
    if isinstance(error, OSError) or "Connect" in name or "Timeout" in name or "Network" in name:
        return PublishError(f"cannot reach the Hugging Face hub ({name}: {error}); check the network or HF_ENDPOINT")
    raise error


def publish(
    repo: str,
    root: Path = ROOT,
    *,
    dry_run: bool = False,
    token: str | None = None,
    message: str | None = None,
    api_factory: Callable[..., Any] | None = None,
    out: Callable[[str], None] = print,
) -> str | None:
    """Upload the upload set to the Space ``repo`` (created as a Gradio Space if missing); return its
    URL. With ``dry_run``, print the plan and touch neither the network nor a token."""
    if repo.count("/") != 1 or not all(repo.split("/")):
        raise PublishError(f"--repo must be USER/SPACE, got {repo!r}", 2)
    files = space_files(root)
    arguments = upload_arguments(repo, root, message)
    out(describe(files))
    out(
        "upload_folder("
        + ", ".join(f"{key}={value!r}" for key, value in arguments.items() if key != "folder_path")
        + ")"
    )
    if dry_run:
        out("dry run: nothing uploaded")
        return None
    from huggingface_hub import HfApi, get_token

    token = token or get_token()
    if not token:
        raise PublishError("no Hugging Face token: run `hf auth login` or set HF_TOKEN (write access)", 2)
    api = (api_factory or HfApi)(token=token)
    try:
        api.whoami()
        api.create_repo(repo, repo_type="space", space_sdk="gradio", exist_ok=True)
        api.upload_folder(**arguments)
    except Exception as error:  # noqa: BLE001 (hub and network errors become one line)
        raise _hub_error(error, repo) from None
    url = f"https://huggingface.co/spaces/{repo}"
    out(f"published: {url}")
    return url


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repo", required=True, help="the Space, USER/SPACE (created as a Gradio Space if missing)")
    parser.add_argument("--dry-run", action="store_true", help="list the files and the upload call; no network")
    parser.add_argument("--token", help="a Hugging Face token with write access (default: HF_TOKEN or hf auth login)")
    parser.add_argument("--message", help="the commit message on the Space")
    args = parser.parse_args(argv)
    try:
        publish(args.repo, dry_run=args.dry_run, token=args.token, message=args.message)
    except PublishError as error:
        print(f"error: {error.message}", file=sys.stderr)
        return error.status
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
