"""CIFAR-100's classes and superclasses, and superclass mappings loaded from JSON.

A *mapping* assigns each of the 100 fine classes (in the dataset's label order) one superclass id.
The dataset's own 20 superclasses are the paper's default; other mappings (for example the ones
derived from WordNet by :mod:`sdml.hierarchy.wordnet`) are read from JSON files of the form::

    {"name": "wordnet_k20",
     "superclass_names": ["...", ...],            # K names; ids are positions in this list
     "classes": {"apple": 3, "aquarium_fish": 1, ...}}   # every fine class name -> id
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from sdml.io.atomic import atomic_write_json
from sdml.io.readback import read_json

# The 20 superclasses and their 5 classes each, as CIFAR-100 lists them.
_GROUPS: dict[str, tuple[str, ...]] = {
    "aquatic_mammals": ("beaver", "dolphin", "otter", "seal", "whale"),
    "fish": ("aquarium_fish", "flatfish", "ray", "shark", "trout"),
    "flowers": ("orchid", "poppy", "rose", "sunflower", "tulip"),
    "food_containers": ("bottle", "bowl", "can", "cup", "plate"),
    "fruit_and_vegetables": ("apple", "mushroom", "orange", "pear", "sweet_pepper"),
    "household_electrical_devices": ("clock", "keyboard", "lamp", "telephone", "television"),
    "household_furniture": ("bed", "chair", "couch", "table", "wardrobe"),
    "insects": ("bee", "beetle", "butterfly", "caterpillar", "cockroach"),
    "large_carnivores": ("bear", "leopard", "lion", "tiger", "wolf"),
    "large_man-made_outdoor_things": ("bridge", "castle", "house", "road", "skyscraper"),
    "large_natural_outdoor_scenes": ("cloud", "forest", "mountain", "plain", "sea"),
    "large_omnivores_and_herbivores": ("camel", "cattle", "chimpanzee", "elephant", "kangaroo"),
    "medium_mammals": ("fox", "porcupine", "possum", "raccoon", "skunk"),
    "non-insect_invertebrates": ("crab", "lobster", "snail", "spider", "worm"),
    "people": ("baby", "boy", "girl", "man", "woman"),
    "reptiles": ("crocodile", "dinosaur", "lizard", "snake", "turtle"),
    "small_mammals": ("hamster", "mouse", "rabbit", "shrew", "squirrel"),
    "trees": ("maple_tree", "oak_tree", "palm_tree", "pine_tree", "willow_tree"),
    "vehicles_1": ("bicycle", "bus", "motorcycle", "pickup_truck", "train"),
    "vehicles_2": ("lawn_mower", "rocket", "streetcar", "tank", "tractor"),
}

#: The 20 superclass names in CIFAR-100's coarse label order (alphabetical).
COARSE_NAMES: tuple[str, ...] = tuple(sorted(_GROUPS))
#: The 100 class names in CIFAR-100's fine label order (alphabetical).
FINE_NAMES: tuple[str, ...] = tuple(sorted(name for names in _GROUPS.values() for name in names))
NUM_CLASSES = len(FINE_NAMES)
_COARSE_OF_NAME = {fine: COARSE_NAMES.index(c) for c, names in _GROUPS.items() for fine in names}
#: Coarse label of each fine label, as a plain tuple (index = fine label).
FINE_TO_COARSE: tuple[int, ...] = tuple(_COARSE_OF_NAME[name] for name in FINE_NAMES)


@dataclass(frozen=True)
class Superclasses:
    """A mapping of the 100 fine classes to K superclasses."""

    name: str
    superclass_names: tuple[str, ...]
    of: torch.Tensor  # (100,) int64: superclass id of each fine label

    @property
    def k(self) -> int:
        return len(self.superclass_names)

    def members(self, superclass: int) -> list[str]:
        """The fine class names in one superclass, in label order."""
        return [FINE_NAMES[i] for i in torch.nonzero(self.of == superclass).flatten().tolist()]

    def to_json(self) -> dict:
        return {
            "name": self.name,
            "superclass_names": list(self.superclass_names),
            "classes": {FINE_NAMES[i]: int(s) for i, s in enumerate(self.of.tolist())},
        }


def cifar_superclasses() -> Superclasses:
    """CIFAR-100's own 20 superclasses (the paper's default)."""
    return Superclasses("cifar", COARSE_NAMES, torch.tensor(FINE_TO_COARSE, dtype=torch.long))


def superclass_of() -> torch.Tensor:
    """(100,) LongTensor: CIFAR-100 superclass id of each fine label."""
    return cifar_superclasses().of


def from_json(obj: dict, source: str = "mapping") -> Superclasses:
    """Validate a JSON mapping (see the module docstring) and build :class:`Superclasses`."""
    if not isinstance(obj, dict):
        raise ValueError(f"{source}: expected a JSON object, got {type(obj).__name__}")
    names = obj.get("superclass_names")
    classes = obj.get("classes")
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise ValueError(f"{source}: 'superclass_names' must be a non-empty list of strings")
    if not isinstance(classes, dict):
        raise ValueError(f"{source}: 'classes' must be an object of class name -> superclass id")
    unknown = sorted(set(classes) - set(FINE_NAMES))
    if unknown:
        raise ValueError(f"{source}: unknown class name(s) {unknown[:5]}; allowed: the 100 CIFAR-100 "
                         f"fine class names (for example {FINE_NAMES[:3]})")
    missing = [n for n in FINE_NAMES if n not in classes]
    if missing:
        raise ValueError(f"{source}: {len(missing)} class(es) have no superclass, "
                         f"for example {missing[:5]}; every one of the 100 classes needs one")
    k = len(names)
    ids = []
    for fine in FINE_NAMES:
        sid = classes[fine]
        if isinstance(sid, bool) or not isinstance(sid, int) or not 0 <= sid < k:
            raise ValueError(f"{source}: classes[{fine!r}] = {sid!r} is not a superclass id; "
                             f"allowed: an integer in 0..{k - 1}")
        ids.append(sid)
    return Superclasses(str(obj.get("name", source)), tuple(names), torch.tensor(ids, dtype=torch.long))


def load_mapping(path: str | Path) -> Superclasses:
    """Read a superclass mapping from a JSON file."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"superclasses: mapping file {str(path)!r} does not exist")
    obj = read_json(path, "fix the mapping (see the format in sdml.hierarchy.superclasses) or "
                          "write it again with python -m sdml hierarchy", kind=object)
    return from_json(obj, source=str(path))


def save_mapping(sc: Superclasses, path: str | Path) -> None:
    """Write a superclass mapping as JSON (atomically)."""
    atomic_write_json(path, sc.to_json())


MAPPINGS_DIR = Path(__file__).resolve().parent / "mappings"
