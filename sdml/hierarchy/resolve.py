"""The superclasses a run uses, by name: the dataset's own, WordNet's, or a JSON mapping.

Above both the mappings and the WordNet modules, so neither has to import the other.
"""
from __future__ import annotations

from sdml.hierarchy.superclasses import Superclasses, load_mapping, own_superclasses

SOURCES = ("cifar", "wordnet")  # besides a path to a JSON mapping


def resolve_superclasses(source: str, k: int = 20, dataset: str = "cifar100") -> Superclasses:
    """The superclasses a run on ``dataset``'s classes uses: ``cifar`` (the dataset's own
    superclasses: CIFAR-100's 20), ``wordnet`` (derived from WordNet into k groups; the committed
    mapping when present, so no WordNet is needed at run time) or a path to a JSON mapping made
    for the same classes."""
    if source == "cifar":
        own = own_superclasses(dataset)
        if own is None:
            raise ValueError(f"superclasses: 'cifar' means the dataset's own superclasses, and "
                             f"{dataset} has none; allowed: wordnet or a JSON mapping")
        return own
    if source == "wordnet":
        from sdml.hierarchy.wordnet import mapping_path, wordnet_superclasses

        committed = mapping_path(dataset, k)
        if committed.is_file():
            return load_mapping(committed, dataset)
        return wordnet_superclasses(k, dataset=dataset)
    return load_mapping(source, dataset)
