"""Superclass mappings of a class set, and their JSON files.

A *mapping* assigns each class of one class set (:mod:`sdml.hierarchy.classes`, in the dataset's
label order) one superclass id. CIFAR-100's own 20 superclasses are the paper's default; other
mappings (for example the ones derived from WordNet by :mod:`sdml.hierarchy.wordnet`) are read
from JSON files of the form::

    {"name": "wordnet_k20",
     "dataset": "cifar100",                       # the class set (absent: cifar100)
     "superclass_names": ["...", ...],            # K names; ids are positions in this list
     "classes": {"apple": 3, "aquarium_fish": 1, ...}}   # every class name -> id

A mapping made for another class set is refused naming both.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from sdml.hierarchy.classes import (COARSE_NAMES, FINE_NAMES, FINE_TO_COARSE, OWN_SUPERCLASSES,
                                    class_names, class_set_of)
from sdml.io.atomic import atomic_write_json
from sdml.io.readback import read_json

__all__ = ["COARSE_NAMES", "FINE_NAMES", "FINE_TO_COARSE", "MAPPINGS_DIR", "NUM_CLASSES",
           "Superclasses", "cifar_superclasses", "from_json", "load_mapping", "own_superclasses",
           "save_mapping", "superclass_of"]

NUM_CLASSES = len(FINE_NAMES)


@dataclass(frozen=True)
class Superclasses:
    """A mapping of the classes of one class set to K superclasses."""

    name: str
    superclass_names: tuple[str, ...]
    of: torch.Tensor  # (C,) int64: superclass id of each label
    dataset: str = "cifar100"  # the class set (see sdml.hierarchy.classes)

    @property
    def class_names(self) -> tuple[str, ...]:
        return class_names(self.dataset)

    @property
    def k(self) -> int:
        return len(self.superclass_names)

    def members(self, superclass: int) -> list[str]:
        """The fine class names in one superclass, in label order."""
        names = self.class_names
        return [names[i] for i in torch.nonzero(self.of == superclass).flatten().tolist()]

    def to_json(self) -> dict:
        names = self.class_names
        return {
            "name": self.name,
            "dataset": self.dataset,
            "superclass_names": list(self.superclass_names),
            "classes": {names[i]: int(s) for i, s in enumerate(self.of.tolist())},
        }


def cifar_superclasses() -> Superclasses:
    """CIFAR-100's own 20 superclasses (the paper's default)."""
    return Superclasses("cifar", COARSE_NAMES, torch.tensor(FINE_TO_COARSE, dtype=torch.long))


def own_superclasses(dataset: str) -> Superclasses | None:
    """The superclasses a class set ships with (CIFAR-100's 20), or ``None`` when it has none."""
    class_names(dataset)  # an unknown class set is an error, not "no superclasses"
    if dataset not in OWN_SUPERCLASSES:
        return None
    names, of = OWN_SUPERCLASSES[dataset]
    return Superclasses("cifar", names, torch.tensor(of, dtype=torch.long), dataset)


def superclass_of() -> torch.Tensor:
    """(100,) LongTensor: CIFAR-100 superclass id of each fine label."""
    return cifar_superclasses().of


def from_json(obj: dict, source: str = "mapping", dataset: str = "cifar100") -> Superclasses:
    """Validate a JSON mapping of ``dataset``'s classes (see the module docstring) and build
    :class:`Superclasses`; a mapping made for another class set is refused naming both."""
    fine_names = class_names(dataset)
    if not isinstance(obj, dict):
        raise ValueError(f"{source}: expected a JSON object, got {type(obj).__name__}")
    names = obj.get("superclass_names")
    classes = obj.get("classes")
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise ValueError(f"{source}: 'superclass_names' must be a non-empty list of strings")
    if not isinstance(classes, dict):
        raise ValueError(f"{source}: 'classes' must be an object of class name -> superclass id")
    made_for = obj.get("dataset", class_set_of(classes) or dataset)
    if made_for != dataset:
        raise ValueError(f"{source}: the mapping was made for the classes of {made_for!r}, but "
                         f"this run's dataset uses those of {dataset!r}; use a mapping made for "
                         f"{dataset!r}")
    unknown = sorted(set(classes) - set(fine_names))
    if unknown:
        raise ValueError(f"{source}: unknown class name(s) {unknown[:5]}; allowed: the "
                         f"{len(fine_names)} {dataset} class names (for example {fine_names[:3]})")
    missing = [n for n in fine_names if n not in classes]
    if missing:
        raise ValueError(f"{source}: {len(missing)} class(es) have no superclass, for example "
                         f"{missing[:5]}; every one of the {len(fine_names)} classes needs one")
    k = len(names)
    ids = []
    for fine in fine_names:
        sid = classes[fine]
        if isinstance(sid, bool) or not isinstance(sid, int) or not 0 <= sid < k:
            raise ValueError(f"{source}: classes[{fine!r}] = {sid!r} is not a superclass id; "
                             f"allowed: an integer in 0..{k - 1}")
        ids.append(sid)
    return Superclasses(str(obj.get("name", source)), tuple(names),
                        torch.tensor(ids, dtype=torch.long), dataset)


def load_mapping(path: str | Path, dataset: str = "cifar100") -> Superclasses:
    """Read a superclass mapping of ``dataset``'s classes from a JSON file."""
    path = Path(path)
    if not path.is_file():
        what = "is a folder, not a file" if path.is_dir() else "does not exist"
        raise ValueError(f"superclasses: mapping file {str(path)!r} {what}; allowed: auto, cifar, "
                         f"wordnet or the path of a JSON mapping file")
    obj = read_json(path, "fix the mapping (see the format in sdml.hierarchy.superclasses) or "
                          "write it again with python -m sdml hierarchy", kind=object)
    return from_json(obj, source=str(path), dataset=dataset)


def save_mapping(sc: Superclasses, path: str | Path) -> None:
    """Write a superclass mapping as JSON (atomically)."""
    atomic_write_json(path, sc.to_json())


MAPPINGS_DIR = Path(__file__).resolve().parent / "mappings"
