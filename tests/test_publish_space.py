"""scripts/publish_space.py: the Space gets every file it runs, nothing else, large files the LFS way.

The hub cannot be reached from here, so the tests check the upload set itself (against the imports of
``app.py``, the files the running app and the registry's models really open, and huggingface_hub's own
reading of the patterns) and the calls made on a stand-in ``HfApi``. How the hub stores large files:
``upload_folder`` sends no git objects; its ``preupload`` request gets an upload mode per file, and the
hub answers LFS for every file over 10 MiB (and for binaries such as safetensors), so the 11.7 MB
models are accepted although this repository has no LFS (and must not need it: no ``filter=lfs``).
"""

from __future__ import annotations

import importlib.util
import json
import modulefinder
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from huggingface_hub import HfApi
from huggingface_hub.errors import HfHubHTTPError

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("publish_space", ROOT / "scripts" / "publish_space.py")
publish_space = importlib.util.module_from_spec(_spec)
sys.modules["publish_space"] = publish_space  # (dataclasses look their module up there)
_spec.loader.exec_module(publish_space)

FILES = publish_space.space_files(ROOT)
PATHS = {f.path for f in FILES}
NEVER = ("runs/", "tests/", "benchmarks/", "scripts/", ".venv/", ".git/", "test-artifacts/", ".ci/")


def tracked(prefix: str) -> list[str]:
    listed = subprocess.run(["git", "ls-files", "--", prefix], cwd=ROOT, capture_output=True, text=True, check=True)
    return [line for line in listed.stdout.splitlines() if (ROOT / line).is_file()]


def test_the_space_gets_the_app_its_config_and_every_module_app_py_imports():
    assert {"app.py", "requirements.txt", "README.md"} <= PATHS
    finder = modulefinder.ModuleFinder(path=[str(ROOT)])  # only this repository's modules, late imports too
    finder.run_script(str(ROOT / "app.py"))
    imported = {
        Path(module.__file__).resolve().relative_to(ROOT).as_posix()
        for module in finder.modules.values()
        if module.__file__ and Path(module.__file__).resolve().is_relative_to(ROOT)
    }
    assert len(imported) > 30 and "ui/errors.py" in imported and "dlm_core/sampler/config.py" in imported
    assert imported - {"app.py"} <= PATHS, sorted(imported - PATHS)
    # Whole packages, so modules loaded lazily by name (dlm_core.sampler's torch modules) are there too.
    for folder in ("ui", "dlm_core", "assets"):
        missing = [path for path in tracked(folder) if path not in PATHS]
        assert not missing, missing


def test_nothing_from_runs_tests_or_tools_and_no_caches():
    assert not [path for path in PATHS if path.startswith(NEVER)]
    assert not [path for path in PATHS if "__pycache__" in path or path.endswith(".pyc") or "/." in "/" + path]
    assert all(not path.endswith(".pt") for path in PATHS)
    assert tracked("runs/") and tracked("tests/")  # there is something to leave out


def test_large_files_are_the_models_and_go_the_lfs_way():
    large = [f for f in FILES if f.size > 10 * 1024 * 1024]
    assert {f.path for f in large} >= {"assets/canvas-diffusion/model.safetensors", "assets/canvas-ar/model.safetensors"}
    assert all(f.lfs for f in large) and not any(f.lfs for f in FILES if f not in large)
    text = publish_space.describe(FILES)
    for f in large:
        assert any(line.startswith("LFS") and line.endswith(f.path) for line in text.splitlines()), f.path
    # Our own git works without LFS: no .gitattributes turns the filter on, and none is uploaded (the
    # Space keeps the one the hub created, which LFS-tracks binaries).
    for attributes in [path for path in (ROOT / ".gitattributes", *ROOT.glob("*/.gitattributes")) if path.is_file()]:
        assert "filter=lfs" not in attributes.read_text(encoding="utf-8"), attributes
    assert ".gitattributes" not in PATHS


def test_upload_folder_reads_the_patterns_as_space_files_does(monkeypatch):
    """huggingface_hub's own file selection for upload_folder (the README's front matter check, which
    asks the hub, switched off) picks exactly ``space_files``."""
    api = HfApi(token="hf_unused")
    monkeypatch.setattr(api, "_validate_yaml", lambda *args, **kwargs: None)
    arguments = publish_space.upload_arguments("user/space", ROOT)
    additions = api._prepare_upload_folder_additions(
        arguments["folder_path"],
        "",
        allow_patterns=arguments["allow_patterns"],
        ignore_patterns=arguments["ignore_patterns"] + publish_space_default_ignores(),
        repo_type="space",
    )
    assert sorted(op.path_in_repo for op in additions) == sorted(PATHS)


def publish_space_default_ignores() -> list[str]:
    from huggingface_hub.utils import DEFAULT_IGNORE_PATTERNS

    return list(DEFAULT_IGNORE_PATTERNS)  # upload_folder appends these itself


class FakeApi:
    """Records the calls publish makes; ``fail`` raises from the named call."""

    def __init__(self, token=None, fail: dict[str, Exception] | None = None):
        self.token, self.fail, self.calls = token, fail or {}, []

    def _call(self, name, *args, **kwargs):
        self.calls.append((name, args, kwargs))
        if name in self.fail:
            raise self.fail[name]
        return {"name": "user"} if name == "whoami" else None

    def whoami(self, *args, **kwargs):
        return self._call("whoami", *args, **kwargs)

    def create_repo(self, *args, **kwargs):
        return self._call("create_repo", *args, **kwargs)

    def upload_folder(self, *args, **kwargs):
        return self._call("upload_folder", *args, **kwargs)


def test_publish_creates_the_space_and_uploads_with_the_patterns():
    made: list[FakeApi] = []
    printed: list[str] = []

    def factory(token=None):
        made.append(FakeApi(token))
        return made[-1]

    url = publish_space.publish("user/space", ROOT, token="hf_x", api_factory=factory, out=printed.append)
    assert url == "https://huggingface.co/spaces/user/space"
    (api,) = made
    assert api.token == "hf_x"
    names = [name for name, _, _ in api.calls]
    assert names == ["whoami", "create_repo", "upload_folder"]
    _, args, kwargs = api.calls[1]
    assert args == ("user/space",) and kwargs == {"repo_type": "space", "space_sdk": "gradio", "exist_ok": True}
    _, args, kwargs = api.calls[2]
    assert not args and kwargs == publish_space.upload_arguments("user/space", ROOT)
    assert kwargs["repo_type"] == "space" and Path(kwargs["folder_path"]) == ROOT
    assert "assets/canvas-diffusion/model.safetensors" in "\n".join(printed)


def test_dry_run_prints_the_plan_and_touches_no_network_or_token(monkeypatch, capsys):
    monkeypatch.delenv("HF_TOKEN", raising=False)

    def no_api(**kwargs):
        raise AssertionError("a dry run must not create an HfApi")

    printed: list[str] = []
    assert publish_space.publish("user/space", ROOT, dry_run=True, api_factory=no_api, out=printed.append) is None
    text = "\n".join(printed)
    assert "dry run: nothing uploaded" in text and "upload_folder(repo_id='user/space'" in text
    listed = {line.split()[-1] for line in text.splitlines()[: len(FILES)]}
    assert listed == PATHS
    assert f"{len(FILES)} files" in text


def test_main_dry_run_and_bad_repo(capsys):
    assert publish_space.main(["--repo", "user/space", "--dry-run"]) == 0
    assert "dry run" in capsys.readouterr().out
    assert publish_space.main(["--repo", "no-slash", "--dry-run"]) == 2
    assert "USER/SPACE" in capsys.readouterr().err


def _http_error(status: int) -> HfHubHTTPError:
    request = httpx.Request("POST", "https://huggingface.co/api/repos/create")
    return HfHubHTTPError(f"{status} error", response=httpx.Response(status, request=request))


@pytest.mark.parametrize(
    ("token", "fail", "status", "needle"),
    [
        (None, {}, 2, "no Hugging Face token: run `hf auth login` or set HF_TOKEN"),
        ("hf_x", {"whoami": httpx.ConnectError("Name or service not known")}, 1, "cannot reach the Hugging Face hub"),
        ("hf_x", {"whoami": _http_error(401)}, 2, "refused the token"),
        ("hf_x", {"upload_folder": _http_error(500)}, 1, "the hub answered an error"),
    ],
    ids=["no-token", "offline", "bad-token", "hub-error"],
)
def test_missing_token_and_offline_give_one_clear_line(monkeypatch, tmp_path, capsys, token, fail, status, needle):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path))  # no stored login
    monkeypatch.setattr(publish_space, "space_files", lambda root: FILES[:1])
    monkeypatch.setattr("huggingface_hub.HfApi", lambda token=None: FakeApi(token, fail))
    argv = ["--repo", "user/space"] + (["--token", token] if token else [])
    assert publish_space.main(argv) == status
    err = capsys.readouterr().err
    assert err.startswith("error: ") and needle in err and "Traceback" not in err and err.count("\n") == 1, err


PROBE = r"""
import json, os, sys
opened = set()
def hook(event, args):
    if event == "open" and isinstance(args[0], (str, bytes, os.PathLike)):
        opened.add(os.path.realpath(os.fsdecode(args[0])))
sys.addaudithook(hook)
import safetensors, safetensors.torch         # weights are read by Rust, which Python's audit hook misses
_safe_open = safetensors.safe_open
def safe_open(filename, *args, **kwargs):
    opened.add(os.path.realpath(os.fsdecode(filename)))
    return _safe_open(filename, *args, **kwargs)
safetensors.safe_open = safetensors.torch.safe_open = safe_open
sys.path.insert(0, ROOT)
import app                                     # builds the page: examples, how-it-works, race data
app.launch_kwargs()                            # stylesheets
from dlm_core.models import registry
from dlm_core.sampler import SamplerConfig, denoise
for spec in registry.list_models():            # every built-in model the dropdown offers, with its twin
    if spec.family == "canvas" and spec.repo_id:
        model = registry.load_model(spec.key)
        strategy = "left_to_right" if model.kind == "autoregressive" else "low_confidence"
        list(denoise(model, "ROMEO:\n", SamplerConfig(gen_length=4, steps=4, strategy=strategy, record_topk=True)))
modules = {os.path.realpath(m.__file__) for m in list(sys.modules.values()) if getattr(m, "__file__", None)}
print(json.dumps(sorted(opened | modules)))
"""


@pytest.mark.slow  # a subprocess that builds the app and loads every built-in model (~20 s)
def test_every_file_the_running_app_opens_is_uploaded():
    """What the Space really reads: run the app's start-up and each built-in model in a subprocess with
    an audit hook on open(), and require every file of this repository it opened or imported."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False"}
    env.pop("DIFFUSION_CANVAS_MODEL", None)  # the Space's default model
    result = subprocess.run(
        [sys.executable, "-c", f"ROOT = {str(ROOT)!r}\n" + PROBE],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    used = {
        Path(path).relative_to(ROOT).as_posix()
        for path in json.loads(result.stdout.splitlines()[-1])
        if Path(path).is_relative_to(ROOT) and Path(path).is_file()
    }
    local = (".venv/", "test-artifacts/", "diffusion_canvas.egg-info/")  # this machine's, not the Space's
    used = {path for path in used if "__pycache__" not in path and not path.startswith(local)}
    assert "assets/canvas-diffusion/model.safetensors" in used and "assets/examples.json" in used
    assert any(path.startswith("dlm_core/sampler/loop") for path in used)  # a lazily loaded module
    assert used <= PATHS, sorted(used - PATHS)


def test_readme_tells_how_to_publish():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "scripts/publish_space.py --repo" in readme and "--dry-run" in readme


def test_fake_api_matches_the_real_signatures():
    """The stand-in is called the way the real HfApi accepts (keyword names exist there)."""
    import inspect

    for name, keywords in (
        ("create_repo", {"repo_type", "space_sdk", "exist_ok"}),
        ("upload_folder", set(publish_space.upload_arguments("u/s", ROOT))),
    ):
        parameters = set(inspect.signature(getattr(HfApi, name)).parameters)
        assert keywords <= parameters, (name, keywords - parameters)
