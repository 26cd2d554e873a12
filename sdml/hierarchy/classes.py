"""The class names of each dataset the kit knows, and the datasets' own superclasses.

A *class set* is named after the dataset that defines it (``cifar100``, ``cifar10``,
``fashion-mnist``); names are in the dataset's label order. A dataset that ships superclasses of
its own (only CIFAR-100 does) lists them here too. Everything that maps classes to superclasses
(:mod:`sdml.hierarchy.superclasses`, the WordNet modules) takes one of these names, so that a
mapping made for one class set is never applied to another.
"""
from __future__ import annotations

# The 20 superclasses of CIFAR-100 and their 5 classes each, as the dataset lists them.
_CIFAR100_GROUPS: dict[str, tuple[str, ...]] = {
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

#: CIFAR-100's 20 superclass names in its coarse label order (alphabetical).
COARSE_NAMES: tuple[str, ...] = tuple(sorted(_CIFAR100_GROUPS))
#: CIFAR-100's 100 class names in its fine label order (alphabetical).
FINE_NAMES: tuple[str, ...] = tuple(sorted(n for names in _CIFAR100_GROUPS.values() for n in names))
_COARSE_OF_NAME = {fine: COARSE_NAMES.index(c) for c, names in _CIFAR100_GROUPS.items()
                   for fine in names}
#: CIFAR-100's coarse label of each fine label (index = fine label).
FINE_TO_COARSE: tuple[int, ...] = tuple(_COARSE_OF_NAME[name] for name in FINE_NAMES)

#: CIFAR-10's classes in label order (its ``batches.meta`` ``label_names``).
CIFAR10_NAMES: tuple[str, ...] = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog",
                                  "horse", "ship", "truck")
#: Fashion-MNIST's classes in label order ("T-shirt/top" ... "Ankle boot" in its paper), written
#: lower case with ``_`` like CIFAR's names, so every name is also a plain identifier-like key.
FASHION_MNIST_NAMES: tuple[str, ...] = ("t-shirt_top", "trouser", "pullover", "dress", "coat",
                                        "sandal", "shirt", "sneaker", "bag", "ankle_boot")

#: Class set name -> class names in label order.
CLASS_NAMES: dict[str, tuple[str, ...]] = {
    "cifar100": FINE_NAMES, "cifar10": CIFAR10_NAMES, "fashion-mnist": FASHION_MNIST_NAMES}
#: Class set name -> (superclass names, superclass of each label) for datasets that have their own.
OWN_SUPERCLASSES: dict[str, tuple[tuple[str, ...], tuple[int, ...]]] = {
    "cifar100": (COARSE_NAMES, FINE_TO_COARSE)}


def class_names(classes: str) -> tuple[str, ...]:
    """The class names of a class set, in label order; an unknown one lists the known ones."""
    try:
        return CLASS_NAMES[classes]
    except (KeyError, TypeError):
        raise ValueError(f"classes: {classes!r} is not a known class set; allowed: "
                         f"{', '.join(CLASS_NAMES)}") from None


def class_set_of(names) -> str | None:
    """The known class set whose names are exactly ``names`` (as a set), or ``None``."""
    wanted = set(names)
    return next((k for k, v in CLASS_NAMES.items() if set(v) == wanted), None)
