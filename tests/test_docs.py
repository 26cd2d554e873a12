"""The README and docs/ name only things that exist: every relative link (and its #anchor), every
repository path written in backticks, and every ``sdml.xxx`` module or attribute."""
from __future__ import annotations

import importlib
import importlib.util
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

# Top-level names of the repository whose paths the docs write in backticks.
REPO_PREFIXES = ("sdml/", "notebooks/", "tests/", "benchmarks/", "docs/", "figures/readme/")
REPO_FILES = ("Makefile", "pyproject.toml", "requirements.txt", "LICENSE", "CITATION.cff")

_FENCE = re.compile(r"^```.*?^```", re.S | re.M)
_LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
_CODE = re.compile(r"`([^`\n]+)`")
_MODULE = re.compile(r"(?<![\w./-])sdml(?:\.[A-Za-z_][A-Za-z0-9_]*)+")


def slug(heading: str) -> str:
    """GitHub's anchor for a Markdown heading: lower case, punctuation dropped, spaces to '-'."""
    text = re.sub(r"[`*_]", "", heading.strip().lower())
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(text: str) -> set[str]:
    return {slug(m.group(1)) for m in re.finditer(r"^#+\s+(.+)$", _FENCE.sub("", text), re.M)}


def broken_links(text: str, here: Path, root: Path) -> list[str]:
    """Relative links of a Markdown text (in folder ``here``) whose file or anchor is missing."""
    problems = []
    for target in _LINK.findall(_FENCE.sub("", text)):
        if re.match(r"[a-z]+:", target):  # http:, https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        dest = (here / path).resolve() if path else None
        if dest is not None and not dest.exists():
            problems.append(f"link {target}: no such file")
            continue
        if anchor:
            page = dest.read_text() if dest is not None else text
            if dest is not None and dest.suffix != ".md":
                problems.append(f"link {target}: an anchor into a file that is not Markdown")
            elif anchor not in anchors(page):
                problems.append(f"link {target}: no heading #{anchor}")
        if dest is not None and root not in dest.parents and dest != root:
            problems.append(f"link {target}: outside the repository")
    return problems


def repo_paths(text: str) -> list[str]:
    """The repository paths written in backticks (words of a command included); placeholders
    such as ``runs/<profile>/`` are not paths."""
    found = []
    for span in _CODE.findall(_FENCE.sub("", text)):
        for word in span.split():
            word = word.strip("'\",;:()")
            if re.search(r"[<>{}$=]", word):
                continue
            if word.startswith(REPO_PREFIXES) or word in REPO_FILES:
                found.append(word)
    return found


def missing_paths(text: str, root: Path) -> list[str]:
    return [f"path {p}: not in the repository" for p in repo_paths(text)
            if not any(root.glob(p.rstrip("/"))) and not (root / p).exists()]


def missing_modules(text: str) -> list[str]:
    """``sdml.a.b.c`` names whose longest module prefix does not have the rest as attributes."""
    problems = []
    for name in sorted(set(_MODULE.findall(text))):
        parts = name.split(".")
        i = 1  # the longest prefix that is a module: ``sdml`` at least
        while i < len(parts) and importlib.util.find_spec(".".join(parts[:i + 1])) is not None:
            i += 1
            if not hasattr(importlib.import_module(".".join(parts[:i])), "__path__"):
                break  # a module, not a package: the rest are attributes
        module = ".".join(parts[:i])
        obj = importlib.import_module(module)
        for attr in parts[i:]:
            if not hasattr(obj, attr):
                problems.append(f"module {name}: {module} has no {attr}")
                break
            obj = getattr(obj, attr)
    return problems


def problems_of(doc: Path, root: Path = ROOT) -> list[str]:
    text = doc.read_text()
    return broken_links(text, doc.parent, root) + missing_paths(text, root) + missing_modules(text)


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_everything_named_exists(doc):
    assert problems_of(doc) == []


def test_docs_index_lists_every_page():
    index = (ROOT / "docs" / "README.md").read_text()
    linked = {t.partition("#")[0] for t in _LINK.findall(index)}
    for page in (ROOT / "docs").glob("*.md"):
        if page.name != "README.md":
            assert page.name in linked, f"docs/README.md does not link {page.name}"


def test_readme_is_a_front_page():
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) < 200
    assert "## Results" in lines and "## Status" in lines


def test_the_checks_catch_what_is_broken(tmp_path):
    """Each check finds a planted fault, and passes the same text without it."""
    (tmp_path / "sdml").mkdir()
    (tmp_path / "sdml" / "real.py").write_text("")
    (tmp_path / "page.md").write_text("# A page\n\n## Known heading\n")
    good = ("See [the page](page.md#known-heading), [here](#top) and `sdml/real.py`.\n\n# Top\n"
            "The module sdml.method.mixup; `runs/<profile>/` is a placeholder.\n")
    bad = ("See [gone](missing.md), [the page](page.md#unknown) and `sdml/gone.py`.\n"
           "The module sdml.method.nothing_here.\n")
    text_problems = (broken_links(good, tmp_path, tmp_path) + missing_paths(good, tmp_path)
                     + missing_modules(good))
    assert text_problems == []
    assert broken_links(bad, tmp_path, tmp_path) == [
        "link missing.md: no such file", "link page.md#unknown: no heading #unknown"]
    assert missing_paths(bad, tmp_path) == ["path sdml/gone.py: not in the repository"]
    assert missing_modules(bad) == ["module sdml.method.nothing_here: sdml.method has no nothing_here"]
