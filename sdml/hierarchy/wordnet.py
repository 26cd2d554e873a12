"""WordNet 3.0 for the kit: finding it, and the derived superclasses built on it.

:func:`get_wordnet` returns an nltk ``WordNetCorpusReader`` for WordNet 3.0, trying in order:

1. the ``wordnet`` corpus nltk already finds on ``nltk.data.path`` (the cache folder is put on
   that path first, so a corpus fetched or copied by an earlier call is reused);
2. ``nltk.download('wordnet')`` into the cache, after a short reachability probe of the data
   server so that an offline machine fails in seconds, not minutes;
3. a system WordNet 3.0 database (Debian's ``wordnet-base`` + ``wordnet-sense-index`` under
   ``/usr/share/wordnet``, or ``$WNHOME/dict``), *copied* into ``<cache>/corpora/wordnet/``
   (nltk reads corpora only from under ``nltk.data.path`` and refuses links pointing elsewhere),
   with the ``lexnames`` file Debian leaves out written from :data:`LEXNAMES`.

The cache folder is ``$SDML_NLTK_DATA`` if set, else ``.cache/nltk_data`` in the source checkout
(or in the working folder for an installed package). The tree, the similarities and the derived
superclasses live in :mod:`sdml.hierarchy.wordnet_tree` and :mod:`sdml.hierarchy.wordnet_groups`; they are re-exported
here. The committed trees and mappings (:func:`tree_path`, :func:`mapping_path`: CIFAR-100's
``mappings/wordnet_tree.json`` and ``mappings/wordnet_k20.json``, another class set's under
``mappings/<dataset>/``) are what :func:`run_hierarchy` writes
(``python -m sdml hierarchy --k 20 --out sdml/hierarchy/mappings/wordnet_k20.json``).
"""
from __future__ import annotations

import os
import re
import shutil
import socket
import threading
import warnings
from pathlib import Path
from urllib.parse import urlsplit
from urllib.request import getproxies, proxy_bypass

from sdml.hierarchy.superclasses import MAPPINGS_DIR, Superclasses, own_superclasses, save_mapping
from sdml.io.atomic import atomic_write_json
from sdml.io.readback import DamagedFile, damage_named, read_json
from sdml.hierarchy.wordnet_groups import (adjusted_rand_index, agreement, derive_superclasses,
                                           normalised_similarity, normalized_mutual_info,
                                           soft_beta_alpha)
from sdml.hierarchy.wordnet_tree import (CLASS_SYNSETS, TREE_RULE, Tree, build_tree,
                                         similarity_matrix)

__all__ = ["CLASS_SYNSETS", "DB_FILES", "LEXNAMES", "TREE_PATH", "TREE_RULE", "Tree", "adjusted_rand_index",
           "agreement", "build_tree", "check_version", "default_cache_dir", "default_system_dirs",
           "derive_superclasses", "get_wordnet", "lexnames_text", "load_similarity", "load_tree",
           "mapping_path", "tree_path",
           "normalised_similarity", "normalized_mutual_info", "run_hierarchy", "save_tree",
           "similarity_matrix", "soft_beta_alpha", "wordnet_superclasses"]

ENV_CACHE = "SDML_NLTK_DATA"
VERSION = "3.0"
TREE_PATH = MAPPINGS_DIR / "wordnet_tree.json"

#: The 45 lexicographer files of WordNet 3.0 in number order (lexnames(5WN)); the syntactic
#: category written next to each is 1 noun, 2 verb, 3 adjective, 4 adverb.
LEXNAMES: tuple[str, ...] = (
    "adj.all", "adj.pert", "adv.all", "noun.Tops", "noun.act", "noun.animal", "noun.artifact",
    "noun.attribute", "noun.body", "noun.cognition", "noun.communication", "noun.event",
    "noun.feeling", "noun.food", "noun.group", "noun.location", "noun.motive", "noun.object",
    "noun.person", "noun.phenomenon", "noun.plant", "noun.possession", "noun.process",
    "noun.quantity", "noun.relation", "noun.shape", "noun.state", "noun.substance", "noun.time",
    "verb.body", "verb.change", "verb.cognition", "verb.communication", "verb.competition",
    "verb.consumption", "verb.contact", "verb.creation", "verb.emotion", "verb.motion",
    "verb.perception", "verb.possession", "verb.social", "verb.stative", "verb.weather", "adj.ppl",
)
_CATEGORY = {"noun": 1, "verb": 2, "adj": 3, "adv": 4}
#: Files nltk's reader opens, besides ``lexnames`` (Debian: wordnet-base + wordnet-sense-index).
DB_FILES = ("cntlist.rev", "index.sense", "index.adj", "index.adv", "index.noun", "index.verb",
            "data.adj", "data.adv", "data.noun", "data.verb", "adj.exc", "adv.exc", "noun.exc", "verb.exc")
_VERSION_RE = re.compile(r"WordNet (\S+) Copyright")


def lexnames_text() -> str:
    """The ``lexnames`` file: one ``NN<tab>name<tab>category`` line per lexicographer file."""
    return "".join(f"{i:02d}\t{name}\t{_CATEGORY[name.split('.')[0]]}\n" for i, name in enumerate(LEXNAMES))


def default_cache_dir() -> Path:
    """``$SDML_NLTK_DATA``, else ``<source checkout or working folder>/.cache/nltk_data``."""
    if os.environ.get(ENV_CACHE):
        return Path(os.environ[ENV_CACHE]).expanduser()
    checkout = Path(__file__).resolve().parents[2]
    base = checkout if (checkout / "pyproject.toml").is_file() else Path.cwd()
    return base / ".cache" / "nltk_data"


def default_system_dirs() -> list[Path]:
    """Where a system WordNet 3.0 database may be: ``$WNHOME/dict``, Debian's, a source install's."""
    dirs = [Path(os.environ["WNHOME"]) / "dict"] if os.environ.get("WNHOME") else []
    return dirs + [Path("/usr/share/wordnet"), Path("/usr/local/WordNet-3.0/dict")]


def _private_dir(path: Path) -> None:
    # nltk refuses data folders that other accounts could write to.
    path.mkdir(parents=True, exist_ok=True)
    mode = path.stat().st_mode & 0o7777
    if mode & 0o022:
        path.chmod(mode & ~0o022)


def _version_in_header(lines) -> str | None:
    for _, line in zip(range(60), lines):
        m = _VERSION_RE.search(line)
        if m:
            return m.group(1)
    return None


def _open_reader(root):
    """A WordNetCorpusReader on an nltk path pointer; checks that it is WordNet 3.0."""
    from nltk.corpus.reader.wordnet import WordNetCorpusReader

    with root.join("data.adj").open() as f:  # cheap check before the reader parses the indexes
        header = _version_in_header(line.decode("utf-8", "replace") if isinstance(line, bytes) else line
                                    for line in f)
    if header != VERSION:
        raise ValueError(f"wordnet: the corpus at {root} is WordNet {header or '(unknown version)'}; "
                         f"allowed: WordNet {VERSION} (the class synsets name 3.0 senses)")
    with warnings.catch_warnings():  # the multilingual (OMW) data is not needed here
        warnings.filterwarnings("ignore", message="The multilingual functions")
        wn = WordNetCorpusReader(root, None)
    check_version(wn)
    return wn


def check_version(wn) -> None:
    """Raise ValueError unless the reader is WordNet 3.0."""
    version = wn.get_version()
    if version != VERSION:
        raise ValueError(f"wordnet: the reader is WordNet {version}; allowed: WordNet {VERSION}")


def _find_on_data_path():
    import nltk

    try:
        return nltk.data.find("corpora/wordnet"), ""
    except LookupError:
        return None, f"no 'corpora/wordnet' under nltk.data.path ({len(nltk.data.path)} folder(s))"


def _unreachable(url: str, timeout_s: float) -> str | None:
    """Why ``url``'s server (or the proxy in front of it) cannot be reached, or None if it can."""
    parts = urlsplit(url)
    host, port = parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)
    proxy = getproxies().get(parts.scheme)
    if proxy and not proxy_bypass(host):
        p = urlsplit(proxy if "://" in proxy else f"http://{proxy}")
        host, port = p.hostname, p.port or 80
    result: list[str | None] = []

    def probe():  # in a thread: name resolution has no timeout of its own
        try:
            socket.create_connection((host, port), timeout=timeout_s).close()
            result.append(None)
        except OSError as err:
            result.append(f"cannot connect to {host}:{port} ({err})")

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout_s)
    return result[0] if result else f"no answer from {host}:{port} within {timeout_s:g} s"


def _download(cache: Path, timeout_s: float) -> str:
    """Step 2; returns '' on success, else the reason it failed."""
    import nltk
    from nltk.downloader import Downloader

    offline = _unreachable(Downloader.DEFAULT_URL, timeout_s)
    if offline:
        return f"offline: {offline}"
    try:
        if not nltk.download("wordnet", download_dir=str(cache), quiet=True, raise_on_error=True):
            return "nltk.download('wordnet') reported a failure"
    except (OSError, ValueError) as err:
        return f"nltk.download('wordnet') failed: {err}"
    return ""


def _copy_system(cache: Path, system_dirs) -> str:
    """Step 3; returns '' once a system database is in ``<cache>/corpora/wordnet``, else why not."""
    reasons = []
    for src in map(Path, system_dirs):
        missing = [f for f in DB_FILES if not (src / f).is_file()]
        if missing:
            reasons.append(f"{src}: " + ("no such folder" if not src.is_dir() else f"missing {', '.join(missing)}"))
            continue
        with open(src / "data.adj", encoding="utf-8", errors="replace") as f:
            version = _version_in_header(f)
        if version != VERSION:
            reasons.append(f"{src}: WordNet {version or '(unknown version)'}, not {VERSION}")
            continue
        corpora = cache / "corpora"
        _private_dir(corpora)
        tmp, dest = corpora / f".wordnet-{os.getpid()}.tmp", corpora / "wordnet"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(mode=0o755)
        for name in DB_FILES:
            shutil.copyfile(src / name, tmp / name)  # a copy of the contents, never a link
            (tmp / name).chmod(0o644)
        if (src / "lexnames").is_file():
            shutil.copyfile(src / "lexnames", tmp / "lexnames")
        else:
            (tmp / "lexnames").write_text(lexnames_text())
        (tmp / "lexnames").chmod(0o644)
        tmp.chmod(0o755)
        if dest.exists():  # an unusable leftover in our own cache (step 1 did not find it)
            shutil.rmtree(dest)
        os.replace(tmp, dest)
        return ""
    return "; ".join(reasons) or "no system folders to look in"


def get_wordnet(cache_dir: str | Path | None = None, *, download: bool = True,
                system_dirs=None, timeout_s: float = 5.0):
    """An nltk ``WordNetCorpusReader`` for WordNet 3.0 (see the module docstring for the steps).

    Args:
        cache_dir: folder for fetched or copied corpora (default :func:`default_cache_dir`);
            it is added to ``nltk.data.path`` and made unwritable for group and others (nltk
            refuses data folders that other accounts could change).
        download: try ``nltk.download`` (step 2).
        system_dirs: folders to look for a system database in (default :func:`default_system_dirs`).
        timeout_s: how long the reachability probe of the download server may take.
    Raises:
        FileNotFoundError: every step failed; the message gives each step's reason and the fixes.
        ValueError: the WordNet found is not version 3.0.
    """
    import nltk

    cache = Path(cache_dir if cache_dir is not None else default_cache_dir()).expanduser().resolve()
    _private_dir(cache)
    if str(cache) not in nltk.data.path:
        nltk.data.path.append(str(cache))
    steps = (("nltk data path", lambda: ""),
             ("nltk.download", lambda: _download(cache, timeout_s) if download else "skipped (download=False)"),
             ("system WordNet", lambda: _copy_system(cache, default_system_dirs() if system_dirs is None
                                                     else system_dirs)))
    reasons, broken = [], []
    for n, (label, step) in enumerate(steps, start=1):
        why = step()  # '' when the step put a corpus in place (or, for step 1, had nothing to do)
        root, missing = (None, why) if why else _find_on_data_path()
        if root is not None and n == 3:  # the copy just made, even if a broken one is found first
            from nltk.data import FileSystemPathPointer

            root = FileSystemPathPointer(str(cache / "corpora" / "wordnet"))
        loaded_badly = False
        if root is not None:
            # A corpus that does not load (a damaged or partial copy in the cache) must not stop
            # the later steps, which replace it: otherwise it would poison every later call.
            try:
                return _open_reader(root)
            except Exception as err:  # nltk raises OSError, LookupError, ValueError, ... on damage
                missing = (f"the corpus at {root} does not load ({type(err).__name__}: "
                           f"{' '.join(str(err).split())[:200]}); delete that folder (a damaged "
                           f"copy) to fetch or copy WordNet again")
                broken.append(err)
                loaded_badly = True
        done_but = not (why or n == 1 or loaded_badly)
        reasons.append(f"{n}. {label}: {'done, but ' + missing if done_but else missing}")
    if broken and all(isinstance(e, ValueError) for e in broken):
        raise ValueError(f"{broken[0]}; tried: " + "; ".join(reasons))
    raise FileNotFoundError(
        "wordnet: WordNet 3.0 not found. Tried:\n  " + "\n  ".join(reasons) + "\nFix one of:\n"
        "  - with network access: python -c \"import nltk; nltk.download('wordnet')\"\n"
        "  - Debian/Ubuntu: apt-get install wordnet-base wordnet-sense-index "
        "(or set WNHOME to a WordNet 3.0 install with a dict/ folder)\n"
        f"  - put an nltk 'wordnet' corpus (WordNet 3.0) at {cache / 'corpora' / 'wordnet'}")


def tree_path(dataset: str = "cifar100") -> Path:
    """Where a class set's committed WordNet tree lives."""
    folder = MAPPINGS_DIR if dataset == "cifar100" else MAPPINGS_DIR / dataset
    return folder / "wordnet_tree.json"


def mapping_path(dataset: str = "cifar100", k: int = 20) -> Path:
    """Where a class set's committed k-group WordNet mapping lives (it may not exist)."""
    return tree_path(dataset).parent / f"wordnet_k{k}.json"


def save_tree(tree: Tree, path: str | Path) -> None:
    """Write the tree (parent map, class synsets, rule) as JSON, atomically."""
    atomic_write_json(path, tree.to_json())


def load_tree(path: str | Path | None = None, dataset: str = "cifar100") -> Tree:
    """Read a tree written by :func:`save_tree` (default: ``dataset``'s committed one; no
    WordNet needed); a tree of another class set is refused."""
    path = tree_path(dataset) if path is None else Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"wordnet: tree file {str(path)!r} does not exist "
                                "(write it with run_hierarchy(k, out, tree_out=...))")
    fix = ("restore it (git checkout), or write it again with "
           "run_hierarchy(k, out, tree_out=...)")
    obj = read_json(path, fix)
    with damage_named(path, fix, "is not a WordNet tree of the kit"):
        tree = Tree.from_json(obj, source="tree")
    if tree.dataset != dataset:
        raise DamagedFile(path, f"the tree was made for the classes of {tree.dataset!r}, not "
                                f"{dataset!r}", fix)
    return tree


def _tree(cache_dir=None, dataset: str = "cifar100") -> Tree:
    if tree_path(dataset).is_file():
        return load_tree(dataset=dataset)
    return build_tree(get_wordnet(cache_dir), dataset=dataset)


def load_similarity(kind: str = "wup", cache_dir: str | Path | None = None,
                    dataset: str = "cifar100"):
    """(C, C) float32 class similarity from the committed tree (WordNet only if it is missing)."""
    return _tree(cache_dir, dataset).similarity_matrix(kind)


def wordnet_superclasses(k: int = 20, cache_dir: str | Path | None = None,
                         dataset: str = "cifar100") -> Superclasses:
    """k superclasses derived from the committed tree (WordNet only if it is missing)."""
    return derive_superclasses(_tree(cache_dir, dataset), k)


def run_hierarchy(k: int, out_path: str | Path, cache_dir: str | Path | None = None,
                  tree_out: str | Path | None = None, dataset: str = "cifar100") -> dict:
    """WordNet -> tree -> k superclasses -> JSON at ``out_path``; returns what was written and,
    for a class set with superclasses of its own, the agreement with them (``ari``, ``nmi``,
    ``contingency``)."""
    wn = get_wordnet(cache_dir)
    tree = build_tree(wn, dataset=dataset)
    sc = derive_superclasses(tree, k)
    save_mapping(sc, out_path)
    if tree_out is not None:
        save_tree(tree, tree_out)
    own = own_superclasses(dataset)
    result = agreement(sc, own) if own is not None else {}
    return {"k": sc.k, "dataset": dataset, "out": str(out_path),
            "tree_out": None if tree_out is None else str(tree_out),
            "wordnet_version": wn.get_version(), "rule": TREE_RULE,
            "superclass_names": list(sc.superclass_names), **result}
