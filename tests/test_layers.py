"""The layer order of ``dlm_core``, read from the real imports, and the import cost it buys.

``import_graph()`` parses every module with ``ast`` (nothing is imported) and lists what each one
imports, at module level and inside functions alike, so a late import cannot hide a cycle or a
wrong-way dependency. ``python tests/test_layers.py`` prints the graph by layer: the README's
"Layout" table is drawn from it.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "dlm_core"

# Bottom up. A module may import from its own layer or any layer below, never above.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("state", ("dlm_core.state",)),
    ("models", ("dlm_core.models",)),
    ("sampler", ("dlm_core.sampler",)),
    ("record and display", ("dlm_core.trajectory", "dlm_core.viz", "dlm_core.speed")),
    (
        "tools",
        (
            "dlm_core.race",
            "dlm_core.cli",
            "dlm_core.__main__",
            "dlm_core.bench",
            "dlm_core.evaluate",
            "dlm_core.quality",
            "dlm_core.train",
            "dlm_core.distill",
            "dlm_core.data",
            "dlm_core.code_data",
            "dlm_core.code_eval",
            "dlm_core.frontier",
            "dlm_core.edit_eval",
        ),
    ),
]
# Siblings that must not know each other: a trajectory is a record, viz draws any run (duck-typed).
SIBLINGS = [("dlm_core.trajectory", "dlm_core.viz")]
THIRD_PARTY = ("torch", "transformers", "gradio", "plotly", "huggingface_hub", "numpy")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _targets(node: ast.Import | ast.ImportFrom, package: str, modules: set[str]) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if not node.level:
        base = node.module or ""
    else:
        parts = package.split(".")
        base = ".".join(parts[: len(parts) - node.level + 1] + ([node.module] if node.module else []))
    # ``from . import hub`` imports the submodule dlm_core.models.hub, not the package.
    names = [f"{base}.{alias.name}" for alias in node.names if f"{base}.{alias.name}" in modules]
    return names or [base]


def import_graph() -> dict[str, set[str]]:
    """Module -> the dlm_core modules and notable third-party packages it imports (any depth)."""
    paths = sorted(PACKAGE.rglob("*.py"))
    modules = {module_name(path) for path in paths}
    graph: dict[str, set[str]] = {}
    for path in paths:
        name = module_name(path)
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import | ast.ImportFrom):
                for target in _targets(node, package, modules):
                    if target.startswith("dlm_core"):
                        found.add(target)
                    elif target.split(".")[0] in THIRD_PARTY:
                        found.add(target.split(".")[0])
        graph[name] = found
    return graph


def layer_of(module: str) -> int:
    for rank, (_, prefixes) in enumerate(LAYERS):
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return rank
    if module == "dlm_core":
        return -1  # the package itself imports nothing
    raise AssertionError(f"{module} belongs to no layer: add it to LAYERS in {Path(__file__).name}")


GRAPH = import_graph()


def test_the_graph_sees_the_known_edges():
    """Guards the parser itself: these imports exist today, so an empty graph cannot pass the rest."""
    assert "dlm_core.sampler.config" in GRAPH["dlm_core.sampler"]
    assert "dlm_core.models.hub" in GRAPH["dlm_core.models.registry"]  # ``from . import hub``
    assert {"dlm_core.state", "torch"} <= GRAPH["dlm_core.sampler.loop"]
    assert "plotly" in GRAPH["dlm_core.viz.export"]  # a function-level import is seen too


@pytest.mark.parametrize("module", sorted(GRAPH))
def test_imports_go_down_the_layers(module):
    for target in sorted(t for t in GRAPH[module] if t.startswith("dlm_core")):
        assert layer_of(target) <= layer_of(module), f"{module} (layer {LAYERS[layer_of(module)][0]}) imports {target}"
    for a, b in SIBLINGS:
        for x, y in ((a, b), (b, a)):
            if module == x or module.startswith(x + "."):
                assert not any(t == y or t.startswith(y + ".") for t in GRAPH[module]), f"{module} imports {y}"


def test_nothing_in_dlm_core_imports_gradio():
    assert [m for m, targets in GRAPH.items() if "gradio" in targets] == []


@pytest.mark.parametrize("prefix", ["dlm_core.state", "dlm_core.viz", "dlm_core.trajectory", "dlm_core.sampler"])
def test_lower_layers_import_no_ui_or_display_code(prefix):
    """state, sampler, trajectory and viz never reach up to tools or the UI (``ui``, ``app``)."""
    for module, targets in GRAPH.items():
        if module == prefix or module.startswith(prefix + "."):
            assert not {"ui", "app", "gradio"} & {t.split(".")[0] for t in targets}, module


def test_no_import_cycles_even_through_late_imports():
    state: dict[str, int] = {}  # 1 = on the current path, 2 = finished

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for target in sorted(GRAPH.get(module, ())):
            if target not in GRAPH:
                continue
            if state.get(target) == 1:
                cycle = path[path.index(target) :] + [target] if target in path else [module, target]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if target not in state:
                visit(target, path + [target])
        state[module] = 2

    for module in sorted(GRAPH):
        if module not in state:
            visit(module, [module])


def test_state_is_numpy_only():
    assert {t for t in GRAPH["dlm_core.state"] if t in THIRD_PARTY} == {"numpy"}
    assert not any(t.startswith("dlm_core") for t in GRAPH["dlm_core.state"])


def test_strategy_rules_are_plain_data_and_every_rule_has_a_function():
    """``SamplerConfig`` can validate strategies from ``sampler.rules`` without the torch code."""
    from dlm_core.sampler.rules import STRATEGY_RULES
    from dlm_core.sampler.strategies import STRATEGIES

    assert not {t for t in GRAPH["dlm_core.sampler.rules"] if t in THIRD_PARTY or t.startswith("dlm_core")}
    assert list(STRATEGIES) == list(STRATEGY_RULES)
    for name, spec in STRATEGIES.items():
        assert spec.name == name and callable(spec.fn)
        assert all(getattr(spec, field) == getattr(STRATEGY_RULES[name], field) for field in vars(STRATEGY_RULES[name]))


def reach(module: str) -> set[str]:
    """Everything ``module`` imports, directly or through other dlm_core modules (package
    ``__init__`` files aside: they only re-export)."""
    seen, todo = set(), [module]
    while todo:
        for target in GRAPH.get(todo.pop(), ()):
            if target not in seen:
                seen.add(target)
                if target in GRAPH and not (PACKAGE / Path(*target.split(".")[1:]) / "__init__.py").is_file():
                    todo.append(target)
    return seen


def test_sampler_config_needs_no_torch_code():
    """``SamplerConfig`` validates from plain data (``sampler.rules``), not from the strategies' tensor
    code; the config's own imports reach neither torch nor the strategies."""
    reached = reach("dlm_core.sampler.config")
    assert "torch" not in reached and "dlm_core.sampler.strategies" not in reached, sorted(reached)
    assert "torch" in reach("dlm_core.sampler.loop")  # the helper does follow imports


def test_records_and_display_load_without_torch():
    """What the import graph promises, checked in a fresh interpreter: the trajectory, viz, state and
    the sampler's settings and prompts need numpy only; the first use of a loop name (``denoise``,
    loaded lazily by ``dlm_core.sampler``) is what brings torch in."""
    viz = sorted(m for m in GRAPH if m == "dlm_core.viz" or m.startswith("dlm_core.viz."))
    light = ["dlm_core", "dlm_core.state", "dlm_core.sampler.config", "dlm_core.sampler.prompt", "dlm_core.trajectory"]
    code = (
        "import importlib, sys\n"
        f"for name in {light + viz!r}: importlib.import_module(name)\n"
        "heavy = sorted({'torch', 'transformers', 'gradio'} & set(sys.modules))\n"
        "assert not heavy, heavy\n"
        "from dlm_core.sampler import denoise, loop\n"
        "assert 'torch' in sys.modules and denoise is loop.denoise, 'the check cannot see torch load'\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]


if __name__ == "__main__":  # the README's Layout table, from the real imports

    def unit(name: str) -> str:
        return next((p for _, prefixes in LAYERS for p in prefixes if name == p or name.startswith(p + ".")), name)

    for layer, prefixes in LAYERS:
        for prefix in prefixes:
            targets = {unit(t) for m in GRAPH if unit(m) == prefix for t in GRAPH[m]} - {prefix}
            print(f"{layer:20} {prefix:22} imports {', '.join(sorted(targets)) or '-'}")
