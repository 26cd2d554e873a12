"""The superclasses a run uses, by name: the dataset's own, WordNet's, or a JSON mapping.

Above both the mappings and the WordNet modules, so neither has to import the other.
"""
from __future__ import annotations

from sdml.hierarchy.superclasses import MAPPINGS_DIR, Superclasses, cifar_superclasses, load_mapping


def resolve_superclasses(source: str, k: int = 20) -> Superclasses:
    """The superclasses a run uses: ``cifar`` (the dataset's 20), ``wordnet`` (derived from
    WordNet into k groups; the committed ``mappings/wordnet_k<k>.json`` when present, so no WordNet
    is needed at run time) or a path to a JSON mapping."""
    if source == "cifar":
        return cifar_superclasses()
    if source == "wordnet":
        committed = MAPPINGS_DIR / f"wordnet_k{k}.json"
        if committed.is_file():
            return load_mapping(committed)
        from sdml.hierarchy.wordnet import wordnet_superclasses

        return wordnet_superclasses(k)
    return load_mapping(source)
