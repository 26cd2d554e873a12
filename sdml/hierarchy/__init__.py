"""Superclasses: the class names, superclass mappings (JSON), and WordNet's tree and grouping.

Layer 1. May import ``sdml.io``. Inside: ``classes`` (each dataset's class names), ``senses``
(curated WordNet senses) < ``superclasses`` < ``wordnet_tree`` < ``wordnet_groups``
< ``wordnet`` < ``resolve`` (a mapping by name: the dataset's own, WordNet's, or a file).
"""
