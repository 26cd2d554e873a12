"""Notebook 01's views of a dataset's WordNet superclasses: the groups at several k, and which
superclasses the dataset is compared with."""
from __future__ import annotations

from sdml.hierarchy.superclasses import Superclasses, own_superclasses
from sdml.hierarchy.wordnet_groups import derive_superclasses
from sdml.hierarchy.wordnet_tree import Tree


def cuts_table(tree: Tree, ks) -> "pandas.DataFrame":
    """One row per (k, group): the groups the average-linkage cut gives at each k, with the
    group's lowest common ancestor synset and members, to choose k from."""
    import pandas as pd

    rows = []
    for k in ks:
        sc = derive_superclasses(tree, k)
        rows += [{"k": k, "group": name, "members": ", ".join(sc.members(i))}
                 for i, name in enumerate(sc.superclass_names)]
    return pd.DataFrame(rows).set_index(["k", "group"])


def reference_for(tree: Tree, derived: Superclasses) -> Superclasses:
    """What the figures colour classes by: the dataset's own superclasses (CIFAR-100's), else
    the derived grouping itself."""
    return own_superclasses(tree.dataset) or derived
