"""No test passes or fails by chance: every random input in ``tests/`` comes from a seeded
generator. The sources are read with ``ast`` (as the layering test reads imports), so the check
runs nothing.

The rule, call by call (names are resolved through each file's imports and aliases):

- ``os.urandom``, ``uuid.uuid1``/``uuid.uuid4`` and anything of ``secrets`` are refused;
- of the ``random`` module only ``random.Random(seed)`` is allowed, with a seed (its
  module-level functions such as ``random.random``, ``random.randint``, ``random.seed`` share
  one global state, and ``random.SystemRandom`` cannot be seeded);
- of ``numpy.random`` only the seeded constructors (``default_rng(seed)``, ``Generator(bits)``,
  ``RandomState(seed)``, ``SeedSequence(seed)``, ``PCG64(seed)``, ...) are allowed, each with an
  argument: ``np.random.rand``, ``np.random.seed`` and the like are refused;
- ``torch.rand``, ``randn``, ``randint``, ``randperm``, ``*_like``, ``multinomial``,
  ``bernoulli``, ``normal``, ``poisson`` and the in-place samplers (``.uniform_()``,
  ``.normal_()``, ``.random_()``, ...) need ``generator=``, unless the same function called
  ``torch.manual_seed`` on an earlier line (a test of what a function does to the global
  generator seeds it first, so its draws are fixed too).

Exemptions are listed in :data:`EXEMPT` with the reason; a value that is not a test input (a
server's access token) may be random.
"""
import ast
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent

#: (file name, call) -> why it may be random.
EXEMPT = {
    ("test_browser.py", "os.urandom"): "the notebook server's access token: a secret, not a test "
                                       "input; nothing the test asserts depends on its value",
}

REFUSED = {"os.urandom", "uuid.uuid1", "uuid.uuid4"}
REFUSED_MODULES = ("secrets.",)
SEEDED_CONSTRUCTORS = {"random.Random", *(f"numpy.random.{n}" for n in (
    "default_rng", "Generator", "RandomState", "SeedSequence", "PCG64", "PCG64DXSM", "MT19937",
    "Philox", "SFC64"))}
TORCH_SAMPLERS = {f"torch.{n}" for n in (
    "rand", "randn", "randint", "randperm", "rand_like", "randn_like", "randint_like",
    "multinomial", "bernoulli", "normal", "poisson")}
INPLACE_SAMPLERS = {"uniform_", "normal_", "random_", "bernoulli_", "exponential_", "geometric_",
                    "cauchy_", "log_normal_"}


def aliases(tree: ast.Module) -> dict[str, str]:
    """Local name -> dotted name it stands for, from the file's imports (any scope)."""
    out = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                out[a.asname or a.name.split(".")[0]] = a.name if a.asname else a.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            for a in node.names:
                out[a.asname or a.name] = f"{node.module}.{a.name}"
    return out


def dotted(node: ast.AST, names: dict[str, str]) -> str | None:
    """``np.random.rand`` -> ``numpy.random.rand`` (None for a call on anything but a name)."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    parts.append(names.get(node.id, node.id))
    return ".".join(reversed(parts))


def _seeded_before(func: ast.AST | None, line: int, names: dict[str, str]) -> bool:
    if func is None:
        return False
    return any(isinstance(n, ast.Call) and dotted(n.func, names) == "torch.manual_seed"
               and n.lineno < line for n in ast.walk(func))


def violations(source: str, filename: str = "<test>") -> list[str]:
    """``file:line: call`` for each call in ``source`` that breaks the rule of this module."""
    tree = ast.parse(source, filename)
    names = aliases(tree)
    enclosing: dict[int, ast.AST] = {}  # id(call) -> innermost function holding it
    for func in ast.walk(tree):
        if isinstance(func, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for n in ast.walk(func):
                enclosing[id(n)] = func  # inner functions are walked later and win
    out = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        name = dotted(node.func, names) or ""
        kwargs = {k.arg for k in node.keywords}
        has_arg = bool(node.args) or bool(node.keywords)
        if name in REFUSED or name.startswith(REFUSED_MODULES):
            bad = True
        elif name in SEEDED_CONSTRUCTORS:
            bad = not has_arg
        elif name.startswith(("random.", "numpy.random.")):
            bad = True
        elif name in TORCH_SAMPLERS or (isinstance(node.func, ast.Attribute)
                                        and node.func.attr in INPLACE_SAMPLERS):
            bad = "generator" not in kwargs and not _seeded_before(enclosing.get(id(node)),
                                                                   node.lineno, names)
            name = name or node.func.attr
        else:
            bad = False
        if bad and (Path(filename).name, name) not in EXEMPT:
            out.append(f"{Path(filename).name}:{node.lineno}: {name}")
    return out


def test_every_random_input_in_the_tests_is_seeded():
    found = [v for path in sorted(TESTS.rglob("*.py"))
             for v in violations(path.read_text(), str(path))]
    assert not found, "unseeded random input(s) in the tests:\n" + "\n".join(found)


PLANTED = [  # (source, is a violation)
    ("import os\nos.urandom(8)", True),
    ("import secrets\nsecrets.token_hex(8)", True),
    ("import random\nrandom.randint(0, 3)", True),
    ("import random\nrandom.random()", True),
    ("import random as r\nr.shuffle([1, 2])", True),
    ("from random import choice\nchoice([1, 2])", True),
    ("import random\nrandom.Random()", True),
    ("import random\nrandom.Random(3).randbytes(8)", False),
    ("import numpy as np\nnp.random.rand(3)", True),
    ("import numpy as np\nnp.random.seed(0)", True),
    ("import numpy as np\nnp.random.default_rng()", True),
    ("import numpy as np\nnp.random.default_rng(0).integers(3)", False),
    ("import torch\ntorch.rand(3)", True),
    ("import torch\ntorch.randn(3, generator=torch.Generator().manual_seed(0))", False),
    ("import torch\ntorch.zeros(3).uniform_()", True),
    ("import torch\ndef f():\n    torch.manual_seed(0)\n    return torch.rand(3)", False),
    ("import torch\ndef f():\n    x = torch.rand(3)\n    torch.manual_seed(0)", True),
    ("import torch\ndef g():\n    torch.manual_seed(0)\ndef f():\n    return torch.rand(3)", True),
]


@pytest.mark.parametrize("source, bad", PLANTED)
def test_the_check_finds_planted_random_inputs(source, bad):
    assert bool(violations(source)) == bad, violations(source)
