"""The WordNet hypernym tree above a dataset's classes, and class similarities on it.

Each class is one WordNet 3.0 noun synset (CIFAR-100: :data:`CLASS_SYNSETS`; CIFAR-10 and
Fashion-MNIST: :mod:`sdml.hierarchy.senses`; the sense the images show, not the first sense). WordNet's noun hierarchy is a graph (a synset may have several hypernyms); it is
made a **tree** by one rule:

    every synset keeps the hypernym on its *longest* path to ``entity.n.01`` (the most specific
    chain); among equally long paths, the one whose synset names, read from the root down,
    come first in lexicographic order.

The rule is consistent: the chosen path of a synset begins with the chosen path of each synset
on it, so every node has one parent whichever class it was reached from.

Similarity of classes a, b is Wu-Palmer (Wu & Palmer, ACL 1994) computed on this tree, with depth
counted in nodes (``entity.n.01`` has depth 1)::

    wup(a, b) = 2 * depth(lca(a, b)) / (depth(a) + depth(b))

The tree needs WordNet only to be built; it is stored as JSON (``Tree.to_json``), so similarities
and derived superclasses can be computed from the stored tree without WordNet.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch

from sdml.hierarchy.classes import class_names
from sdml.hierarchy.senses import CIFAR10_SYNSETS, FASHION_MNIST_SYNSETS

ROOT = "entity.n.01"
TREE_RULE = ("parent = hypernym on the longest path to entity.n.01; ties: the path whose synset "
             "names, root first, are lexicographically smallest")
SIMILARITY_KINDS = ("wup", "path")

#: CIFAR-100 class name -> WordNet 3.0 noun synset (the sense the images show). Each choice was
#: checked against its definition; comments mark the classes where nltk's first sense is another.
CLASS_SYNSETS: dict[str, str] = {
    "apple": "apple.n.01",              # the fruit (apple.n.02 is the tree)
    "aquarium_fish": "goldfish.n.01",   # no WordNet lemma: goldfish, "used as pond or aquarium fishes"
    "baby": "baby.n.01",
    "bear": "bear.n.01",
    "beaver": "beaver.n.07",            # first sense: beaver fur
    "bed": "bed.n.01",
    "bee": "bee.n.01",
    "beetle": "beetle.n.01",
    "bicycle": "bicycle.n.01",
    "bottle": "bottle.n.01",
    "bowl": "bowl.n.01",                # the vessel, not the quantity or the stadium
    "boy": "male_child.n.01",           # "a youthful male person"
    "bridge": "bridge.n.01",
    "bus": "bus.n.01",
    "butterfly": "butterfly.n.01",
    "camel": "camel.n.01",
    "can": "can.n.01",                  # the metal container
    "castle": "castle.n.02",            # first sense: palace.n.01 (a stately mansion)
    "caterpillar": "caterpillar.n.01",  # the larva, not the tracked vehicle
    "cattle": "cattle.n.01",
    "chair": "chair.n.01",
    "chimpanzee": "chimpanzee.n.01",
    "clock": "clock.n.01",
    "cloud": "cloud.n.02",              # first sense: any visible mass of particles (smoke, dust)
    "cockroach": "cockroach.n.01",
    "couch": "sofa.n.01",               # lemmas sofa, couch, lounge
    "crab": "crab.n.01",
    "crocodile": "crocodile.n.01",
    "cup": "cup.n.01",
    "dinosaur": "dinosaur.n.01",
    "dolphin": "dolphin.n.02",          # first sense: dolphinfish.n.02 (a fish)
    "elephant": "elephant.n.01",
    "flatfish": "flatfish.n.02",        # first sense: flatfish as food
    "forest": "forest.n.02",            # first sense: the vegetation; .n.02 is the wooded land
    "fox": "fox.n.01",
    "girl": "female_child.n.01",        # first sense girl.n.01 is "a young woman"
    "hamster": "hamster.n.01",
    "house": "house.n.01",
    "kangaroo": "kangaroo.n.01",
    "keyboard": "keyboard.n.01",        # keys of a computer, typewriter or piano (not key holder)
    "lamp": "lamp.n.02",                # table or floor lamp: "furniture holding electric light bulbs"
    "lawn_mower": "lawn_mower.n.01",
    "leopard": "leopard.n.02",          # first sense: the pelt
    "lion": "lion.n.01",
    "lizard": "lizard.n.01",
    "lobster": "lobster.n.02",          # first sense: lobster as food
    "man": "man.n.01",
    "maple_tree": "maple.n.02",         # the tree (maple.n.01 is the wood)
    "motorcycle": "motorcycle.n.01",
    "mountain": "mountain.n.01",
    "mouse": "mouse.n.01",              # the rodent (mouse.n.04 is the computer device)
    "mushroom": "mushroom.n.02",        # fleshy fungi including toadstools (the photos show wild ones)
    "oak_tree": "oak.n.02",             # the tree (oak.n.01 is the wood)
    "orange": "orange.n.01",            # the fruit
    "orchid": "orchid.n.01",
    "otter": "otter.n.02",              # first sense: the fur
    "palm_tree": "palm.n.03",           # first sense: the palm of the hand
    "pear": "pear.n.01",                # the fruit
    "pickup_truck": "pickup.n.01",      # lemmas pickup, pickup_truck
    "pine_tree": "pine.n.01",
    "plain": "plain.n.01",
    "plate": "plate.n.04",              # first sense: home_plate.n.01 (baseball)
    "poppy": "poppy.n.01",
    "porcupine": "porcupine.n.01",
    "possum": "opossum.n.02",           # the American opossum (phalanger.n.01 is Australian)
    "rabbit": "rabbit.n.01",
    "raccoon": "raccoon.n.02",          # first sense: the fur
    "ray": "ray.n.07",                  # first sense: beam.n.04 (a column of light)
    "road": "road.n.01",
    "rocket": "rocket.n.01",            # the vehicle, not the engine or the salad plant
    "rose": "rose.n.01",
    "sea": "sea.n.01",
    "seal": "seal.n.09",                # first sense: sealing_wax.n.01
    "shark": "shark.n.01",
    "shrew": "shrew.n.02",              # first sense: a nagging woman
    "skunk": "skunk.n.04",              # first sense: rotter.n.01 (a despicable person)
    "skyscraper": "skyscraper.n.01",
    "snail": "snail.n.01",
    "snake": "snake.n.01",
    "spider": "spider.n.01",
    "squirrel": "squirrel.n.01",
    "streetcar": "streetcar.n.01",
    "sunflower": "sunflower.n.01",
    "sweet_pepper": "sweet_pepper.n.02",  # the vegetable (sweet_pepper.n.01 is the plant)
    "table": "table.n.02",              # first sense: a table of data
    "tank": "tank.n.01",                # the armoured vehicle (also nltk's first sense)
    "telephone": "telephone.n.01",
    "television": "television_receiver.n.01",  # first sense: broadcasting
    "tiger": "tiger.n.02",              # first sense: a fierce person
    "tractor": "tractor.n.01",
    "train": "train.n.01",
    "trout": "trout.n.02",              # first sense: trout as food
    "tulip": "tulip.n.01",
    "turtle": "turtle.n.02",            # first sense: turtleneck.n.01
    "wardrobe": "wardrobe.n.01",        # the furniture, not a collection of clothes
    "whale": "whale.n.02",              # first sense: giant.n.04 (a large person)
    "willow_tree": "willow.n.01",
    "wolf": "wolf.n.01",
    "woman": "woman.n.01",
    "worm": "worm.n.01",
}


def curated_synsets(dataset: str = "cifar100") -> dict[str, str]:
    """The curated synset of each class of a class set, in label order."""
    names = class_names(dataset)
    table = {"cifar100": CLASS_SYNSETS, "cifar10": CIFAR10_SYNSETS,
             "fashion-mnist": FASHION_MNIST_SYNSETS}.get(dataset)
    if table is None or list(table) != list(names):
        raise ValueError(f"classes: no curated WordNet senses for {dataset!r}")
    return dict(table)


def chosen_path(synset) -> list[str]:
    """The synset's path from ``entity.n.01`` under :data:`TREE_RULE` (names, root first)."""
    paths = [[s.name() for s in p] for p in synset.hypernym_paths()]
    return min(paths, key=lambda p: (-len(p), p))


class Tree:
    """A rooted tree of synset names with a class set's classes on it (leaves or inner nodes).

    Attributes:
        parent: node -> parent node (``None`` for the root).
        class_nodes: (C,) synset name of each label.
        dataset: the class set (see :mod:`sdml.hierarchy.classes`).
        depth: node -> depth in nodes (the root has depth 1).
    """

    def __init__(self, parent: Mapping[str, str | None], class_nodes: Sequence[str],
                 dataset: str = "cifar100"):
        self.parent = dict(parent)
        self.class_nodes = tuple(class_nodes)
        self.dataset = dataset
        self.class_names = class_names(dataset)
        roots = sorted(n for n, p in self.parent.items() if p is None)
        if len(roots) != 1:
            raise ValueError(f"tree: needs exactly one root, got {roots[:5]}")
        self.root = roots[0]
        if len(self.class_nodes) != len(self.class_names):
            raise ValueError(f"tree: class_nodes has {len(self.class_nodes)} entries; "
                             f"allowed: one per class of {dataset} ({len(self.class_names)})")
        unknown = [n for n in self.class_nodes if n not in self.parent]
        if unknown:
            raise ValueError(f"tree: class node(s) {unknown[:5]} are not in the tree")
        self.depth: dict[str, int] = {}
        for node in sorted(self.parent):
            self._depth_of(node)

    def _depth_of(self, node: str) -> None:
        chain: list[str] = []  # nodes whose depth is not known yet, from `node` upwards
        while node is not None and node not in self.depth:
            if node not in self.parent:
                raise ValueError(f"tree: {chain[-1]!r} has parent {node!r}, which is not in the tree")
            if len(chain) > len(self.parent):
                raise ValueError(f"tree: the parent map has a cycle through {node!r}")
            chain.append(node)
            node = self.parent[node]
        depth = 0 if node is None else self.depth[node]
        for n in reversed(chain):
            depth += 1
            self.depth[n] = depth

    def node(self, name: str) -> str:
        """A class name (``"dolphin"``) or a synset name in the tree -> the synset name."""
        if name in self.parent:
            return name
        if name in self.class_names:
            return self.class_nodes[self.class_names.index(name)]
        raise ValueError(f"tree: {name!r} is neither a {self.dataset} class name nor a synset "
                         f"in the tree")

    def path(self, name: str) -> list[str]:
        """Synset names from the root down to ``name``."""
        node, out = self.node(name), []
        while node is not None:
            out.append(node)
            node = self.parent[node]
        return out[::-1]

    def lca(self, a: str, b: str) -> str:
        """Lowest common ancestor of two classes or synsets (a node is its own ancestor)."""
        return self.lca_of([a, b])

    def lca_of(self, names: Sequence[str]) -> str:
        """Lowest common ancestor of one or more classes or synsets."""
        if not names:
            raise ValueError("names: needs at least one class or synset")
        common = self.path(names[0])
        for name in names[1:]:
            other = self.path(name)
            n = 0
            while n < min(len(common), len(other)) and common[n] == other[n]:
                n += 1
            common = common[:n]
        return common[-1]

    def similarity_numpy(self, kind: str = "wup") -> np.ndarray:
        """(C, C) float64 class similarity (see :func:`similarity_matrix`)."""
        if kind not in SIMILARITY_KINDS:
            raise ValueError(f"kind: {kind!r}; allowed: {', '.join(SIMILARITY_KINDS)}")
        n = len(self.class_nodes)
        d = np.array([self.depth[c] for c in self.class_nodes], dtype=np.float64)  # (C,)
        d_lca = np.empty((n, n), dtype=np.float64)
        for i in range(n):
            for j in range(i, n):
                d_lca[i, j] = d_lca[j, i] = self.depth[self.lca(self.class_nodes[i], self.class_nodes[j])]
        if kind == "wup":
            return 2.0 * d_lca / (d[:, None] + d[None, :])
        return 1.0 / (1.0 + d[:, None] + d[None, :] - 2.0 * d_lca)  # path: 1 / (1 + edges between)

    def similarity_matrix(self, kind: str = "wup", dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """(C, C) class similarity: symmetric, 1 on the diagonal, in (0, 1]."""
        return torch.from_numpy(self.similarity_numpy(kind)).to(dtype)

    def to_json(self) -> dict:
        return {"root": self.root, "rule": TREE_RULE, "dataset": self.dataset,
                "classes": dict(zip(self.class_names, self.class_nodes)),
                "parent": {n: self.parent[n] for n in sorted(self.parent)}}

    @classmethod
    def from_json(cls, obj: dict, source: str = "tree") -> "Tree":
        if not isinstance(obj, dict) or not isinstance(obj.get("parent"), dict) \
                or not isinstance(obj.get("classes"), dict):
            raise ValueError(f"{source}: expected an object with 'parent' and 'classes' objects")
        classes, dataset = obj["classes"], obj.get("dataset", "cifar100")
        names = class_names(dataset)
        missing = [n for n in names if n not in classes]
        if missing or len(classes) != len(names):
            raise ValueError(f"{source}: 'classes' must name a synset for each of the {len(names)} "
                             f"{dataset} classes (missing {missing[:5]}, {len(classes)} given)")
        return cls(obj["parent"], [classes[n] for n in names], dataset)


def build_tree(wn, class_synsets: Mapping[str, str] | None = None,
               dataset: str = "cifar100") -> Tree:
    """The hypernym tree of a class set's synsets (see :data:`TREE_RULE`), from an nltk WordNet
    reader; ``class_synsets`` defaults to the curated ones (:func:`curated_synsets`)."""
    names = class_names(dataset)
    if class_synsets is None:
        class_synsets = curated_synsets(dataset)
    parent: dict[str, str | None] = {}
    for fine in names:
        path = chosen_path(wn.synset(class_synsets[fine]))
        if path[0] != ROOT:
            raise ValueError(f"class_synsets[{fine!r}]: its hypernyms end at {path[0]!r}, not {ROOT!r}")
        for up, node in zip([None] + path[:-1], path):
            if parent.setdefault(node, up) != up:  # cannot happen under TREE_RULE; checked anyway
                raise RuntimeError(f"tree: {node!r} reached with parents {parent[node]!r} and {up!r}")
    return Tree(parent, [class_synsets[fine] for fine in names], dataset)


def similarity_matrix(wn_or_tree, kind: str = "wup", dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """(C, C) class similarity on the tree: ``wup`` (Wu-Palmer, depth in nodes) or ``path``
    (1 / (1 + number of tree edges between the classes)). Takes a :class:`Tree` or a WordNet reader."""
    tree = wn_or_tree if isinstance(wn_or_tree, Tree) else build_tree(wn_or_tree)
    return tree.similarity_matrix(kind, dtype)
