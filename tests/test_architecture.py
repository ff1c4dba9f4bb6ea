"""The shape of the house (docs/architecture.md): no import circles, layers import downwards,
and the simulator is reached only through the backend registry.

Imports are read with `ast`, so every import counts: at module level, inside functions,
under `if TYPE_CHECKING:`, and `importlib.import_module("...")` with a literal name. A
package's `__init__` is the module its package name stands for; importing `a.b.c` is an
edge to `a.b.c` only (the parents it loads first are not counted: a door re-exporting
its own modules is not a circle).
"""

from __future__ import annotations

import ast
from collections.abc import Iterable
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

#: Lower layers never import higher ones (same rank: allowed unless FORBIDDEN says no).
LAYERS: list[tuple[str, ...]] = [
    ("gateway", "gateway.errors", "gateway.clock", "gateway.logs", "gateway.control"),
    ("gateway.config",),
    ("gateway.store", "gateway.events"),
    ("gateway.drivers", "gateway.uplink", "gateway.dc09"),
    ("gateway.engine",),
    ("gateway.outputs", "gateway.snapshots", "gateway.supervision", "gateway.police",
     "gateway.inspection"),
    ("gateway.systemd",),
    ("gateway.service",),
    ("gateway.cli", "gateway.__main__"),
]

#: Same-rank packages that must not know each other: a driver knows its hardware and
#: nothing else, the uplink knows MQTT, the protocol and the store, and the DC-09 path
#: knows its receiver.
FORBIDDEN: list[tuple[str, str]] = [
    ("gateway.drivers", "gateway.uplink"),
    ("gateway.uplink", "gateway.drivers"),
    ("gateway.store", "gateway.events"),
    ("gateway.dc09", "gateway.uplink"),
    ("gateway.dc09", "gateway.drivers"),
    ("gateway.uplink", "gateway.dc09"),
    ("gateway.drivers", "gateway.dc09"),
]

#: The one module of gateway that may import the simulator.
SIM_DOOR = "gateway.drivers.backends"


def module_files(root: Path, package: str) -> dict[str, Path]:
    """Every module of `package` (a folder under `root`), by dotted name."""
    mods: dict[str, Path] = {}
    for path in sorted((root / package).rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        mods[".".join(parts)] = path
    return mods


def imports_of(name: str, path: Path, known: Iterable[str]) -> set[str]:
    """The dotted names `name` imports, resolved to modules where `known` has them."""
    known = set(known)
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            for alias in node.names:
                sub = f"{mod}.{alias.name}"
                found.add(sub if sub in known else mod)
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
              and node.func.attr == "import_module" and node.args
              and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
            found.add(node.args[0].value)
    return found


def graph(root: Path, package: str) -> dict[str, set[str]]:
    """Module -> the modules of `package` it imports, plus outside names it imports."""
    mods = module_files(root, package)
    return {name: imports_of(name, path, mods) for name, path in mods.items()}


def cycles(g: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (or a self-import)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    counter = 0

    def visit(v: str) -> None:
        nonlocal counter
        index[v] = low[v] = counter
        counter += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(g.get(v, ())):
            if w not in g:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp: list[str] = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1 or v in g.get(v, ()):
                out.append(sorted(comp))

    for v in sorted(g):
        if v not in index:
            visit(v)
    return out


def _under(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def layer_of(name: str) -> tuple[int, str]:
    """The rank of the layer `name` is in, and the layer entry that matched (longest)."""
    best: tuple[int, str] | None = None
    for rank, entries in enumerate(LAYERS):
        for entry in entries:
            if _under(name, entry) and (best is None or len(entry) > len(best[1])):
                best = (rank, entry)
    assert best is not None, f"{name} is in no layer of LAYERS: add it (and to the docs)"
    return best


def violations(g: dict[str, set[str]]) -> list[str]:
    """Every import that goes up a layer, crosses a FORBIDDEN pair or reaches hw_sim."""
    found: list[str] = []
    for mod, deps in sorted(g.items()):
        rank, _ = layer_of(mod)
        for dep in sorted(deps):
            if _under(dep, "hw_sim") and mod != SIM_DOOR:
                found.append(f"{mod} imports {dep}: only {SIM_DOOR} may reach the simulator")
            if dep not in g:
                continue
            dep_rank, _ = layer_of(dep)
            if dep_rank > rank:
                found.append(f"{mod} (layer {rank}) imports {dep} (layer {dep_rank})")
            for low, high in FORBIDDEN:
                if _under(mod, low) and _under(dep, high):
                    found.append(f"{mod} imports {dep}: {low} must not know {high}")
    return found


# -- the house -----------------------------------------------------------------------------


def test_gateway_has_no_import_circle() -> None:
    found = cycles(graph(REPO, "gateway"))
    assert found == [], "import circles in gateway/: " + "; ".join(
        " <-> ".join(c) for c in found)


def test_gateway_imports_go_down_the_layers_and_reach_hw_sim_only_through_the_registry() -> None:
    assert violations(graph(REPO, "gateway")) == []


def test_every_module_is_in_a_layer_and_opens_with_a_docstring() -> None:
    for name, path in module_files(REPO, "gateway").items():
        layer_of(name)
        if path.stat().st_size:
            assert ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))), (
                f"{path.relative_to(REPO)} has no module docstring saying what it is for")


def test_the_architecture_doc_names_every_package() -> None:
    doc = (REPO / "docs" / "architecture.md").read_text(encoding="utf-8")
    packages = sorted({p.parent.relative_to(REPO).as_posix()
                       for p in (REPO / "gateway").rglob("__init__.py")})
    missing = [p for p in packages if f"{p}/" not in doc]
    assert missing == [], f"docs/architecture.md does not describe {missing}"


# -- the checker itself: it must see what it is for ------------------------------------------


def _package(tmp_path: Path, files: dict[str, str]) -> dict[str, set[str]]:
    for rel, text in files.items():
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return graph(tmp_path, "gateway")


@pytest.mark.parametrize("how", [
    "from gateway.a import x\n",
    "def f():\n    from gateway import a\n",
    "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from gateway.a import x\n",
    "import importlib\nimportlib.import_module('gateway.a')\n",
    "from . import a\n",
])
def test_the_checker_finds_a_circle_however_it_is_imported(tmp_path: Path, how: str) -> None:
    g = _package(tmp_path, {"gateway/__init__.py": "", "gateway/a.py": "import gateway.b\n",
                            "gateway/b.py": how})
    assert cycles(g) == [["gateway.a", "gateway.b"]]


def test_the_checker_does_not_count_a_door_re_exporting_its_modules(tmp_path: Path) -> None:
    g = _package(tmp_path, {"gateway/__init__.py": "",
                            "gateway/config/__init__.py": "from gateway.config.b import x\n",
                            "gateway/config/a.py": "x = 1\n",
                            "gateway/config/b.py": "from gateway.config.a import x\n"})
    assert cycles(g) == []


def test_the_checker_finds_an_upward_import_and_a_stray_simulator_import(tmp_path: Path) -> None:
    g = _package(tmp_path, {"gateway/__init__.py": "",
                            "gateway/drivers/__init__.py": "",
                            "gateway/drivers/gpio.py": "from gateway.engine import Engine\n"
                                                       "from hw_sim.gpio import SimPanel\n",
                            "gateway/drivers/backends.py": "import hw_sim.backends\n",
                            "gateway/engine.py": ""})
    assert violations(g) == [
        "gateway.drivers.gpio (layer 3) imports gateway.engine (layer 4)",
        "gateway.drivers.gpio imports hw_sim.gpio: only gateway.drivers.backends may reach the"
        " simulator"]


def test_the_program_starts_without_the_service_s_hardware_and_mqtt_libraries() -> None:
    # `alarmgw --version` (the installer's check of a new venv) and the parser must not pull
    # the whole service in: the heavy parts are imported when a command needs them.
    import subprocess
    import sys

    code = ("import sys, gateway.cli; print(sorted(m for m in sys.modules"
            " if m.split('.')[0] in ('pymodbus', 'paho', 'gpiozero', 'serial')"
            " or m == 'gateway.service.service'))")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, check=True, cwd=REPO)
    assert res.stdout.strip() == "[]"
