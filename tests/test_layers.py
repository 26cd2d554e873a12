"""The house stays layered: each subpackage of ``sdml`` imports only the layers below it, and no
module imports another in a cycle. Imports are read with ``ast`` (function-level imports too),
so the check needs no import of the kit itself."""
import ast
from pathlib import Path

import pytest

SDML = Path(__file__).resolve().parents[1] / "sdml"

# Bottom to top; a module may import its own layer and the layers before it.
LAYERS = ("io", "hierarchy", "data", "method", "models", "training", "results", "notebooks", "cli")
TOP_LEVEL = {"sdml", "sdml.__main__", "sdml.cli"}  # the package marker and the command line


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_modules(path: Path, root: Path, known: set[str]) -> set[str]:
    """The sdml modules that ``path`` imports, resolved to module names present in ``known``."""
    name = module_name(path, root)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            targets = [mod] + [f"{mod}.{a.name}" for a in node.names]
        else:
            continue
        for t in targets:
            # the longest known module that t names (a name imported from a module is not one)
            while t and t not in known:
                t = t.rpartition(".")[0]
            if t and t != name and t.startswith("sdml"):
                out.add(t)
    return out


def import_graph(root: Path = SDML) -> dict[str, set[str]]:
    files = sorted(root.rglob("*.py"))
    known = {module_name(f, root) for f in files}
    return {module_name(f, root): imported_modules(f, root, known) for f in files}


def layer_of(module: str) -> int:
    parts = module.split(".")
    if module in TOP_LEVEL:
        return LAYERS.index("cli")
    return LAYERS.index(parts[1])


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a list of modules (first == last), or None."""
    state: dict[str, int] = {}  # 1: on the stack, 2: done
    stack: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        stack.append(m)
        for d in sorted(graph.get(m, ())):
            if d == "sdml" or (m == "sdml" and d != "sdml"):
                continue  # a package's own __init__ is not an edge of its modules
            if state.get(d) == 1:
                return stack[stack.index(d):] + [d]
            if d not in state:
                found = visit(d)
                if found:
                    return found
        stack.pop()
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state:
            found = visit(m)
            if found:
                return found
    return None


def layer_violations(graph: dict[str, set[str]]) -> list[str]:
    bad = []
    for m, deps in sorted(graph.items()):
        if m == "sdml":
            continue
        for d in sorted(deps):
            if d == "sdml":
                continue
            if layer_of(d) > layer_of(m):
                bad.append(f"{m} (layer {LAYERS[layer_of(m)]}) imports {d} (layer {LAYERS[layer_of(d)]})")
    return bad


def test_every_module_sits_in_a_known_layer():
    for m in import_graph():
        if m not in TOP_LEVEL:
            assert m.split(".")[1] in LAYERS, f"{m} is in no layer; LAYERS are {LAYERS}"


def test_no_layer_imports_one_above_it():
    assert layer_violations(import_graph()) == []


def test_no_import_cycles():
    assert find_cycle(import_graph()) is None


def test_each_layer_says_what_it_is():
    for layer in LAYERS[:-1]:
        init = SDML / layer / "__init__.py"
        doc = ast.get_docstring(ast.parse(init.read_text()))
        assert doc and "import" in doc, f"{init} must say what the layer is and what it may import"


def _write(root: Path, rel: str, text: str) -> None:
    p = root / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text)


@pytest.fixture
def toy(tmp_path):
    root = tmp_path / "sdml"
    _write(root, "__init__.py", "")
    _write(root, "io/__init__.py", "")
    _write(root, "io/atomic.py", "import os\n")
    _write(root, "data/__init__.py", "")
    _write(root, "data/cifar.py", "from sdml.io.atomic import os\n")
    _write(root, "data/load.py", "from .cifar import x\n")
    return root


def test_checks_catch_a_cycle_and_an_upward_import(toy):
    graph = import_graph(toy)
    assert graph["sdml.data.load"] == {"sdml.data.cifar"}  # relative import resolved
    assert find_cycle(graph) is None and layer_violations(graph) == []
    # a function-level import that closes a cycle inside the data layer
    _write(toy, "data/cifar.py", "from sdml.io.atomic import os\n\ndef f():\n    from sdml.data import load\n")
    assert find_cycle(import_graph(toy)) == ["sdml.data.cifar", "sdml.data.load", "sdml.data.cifar"]
    # the lowest layer reaching up into data
    _write(toy, "io/atomic.py", "def g():\n    import sdml.data.cifar\n")
    assert layer_violations(import_graph(toy)) == [
        "sdml.io.atomic (layer io) imports sdml.data.cifar (layer data)"]
