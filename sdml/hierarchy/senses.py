"""Curated WordNet 3.0 noun senses for the classes of CIFAR-10 and Fashion-MNIST.

Each class is the synset that names what its images show, checked against the synset's
definition (nltk's first sense is often another); CIFAR-100's senses are
:data:`sdml.hierarchy.wordnet_tree.CLASS_SYNSETS`. A test checks every name against WordNet.
"""
from __future__ import annotations

#: CIFAR-10 class -> synset.
CIFAR10_SYNSETS: dict[str, str] = {
    "airplane": "airplane.n.01",      # "an aircraft that has a fixed wing"
    "automobile": "car.n.01",         # "a motor vehicle with four wheels"
    "bird": "bird.n.01",
    "cat": "cat.n.01",                # the feline (cat.n.02 is a person)
    "deer": "deer.n.01",
    "dog": "dog.n.01",
    "frog": "frog.n.01",
    "horse": "horse.n.01",
    "ship": "ship.n.01",              # "a vessel that carries passengers or freight"
    "truck": "truck.n.01",            # "an automotive vehicle suitable for hauling"
}

#: Fashion-MNIST class -> synset.
FASHION_MNIST_SYNSETS: dict[str, str] = {
    "t-shirt_top": "jersey.n.03",     # lemmas jersey, T-shirt, tee shirt: "a close-fitting pullover shirt"
    "trouser": "trouser.n.01",        # "a garment extending from the waist to the knee or ankle"
    "pullover": "pullover.n.01",      # "a sweater that is put on by pulling it over the head"
    "dress": "dress.n.01",            # "a one-piece garment for a woman"
    "coat": "coat.n.01",              # "an outer garment that has sleeves"
    "sandal": "sandal.n.01",
    "shirt": "shirt.n.01",            # "a garment worn on the upper half of the body"
    "sneaker": "gym_shoe.n.01",       # lemmas gym shoe, sneaker, tennis shoe
    "bag": "bag.n.04",                # handbag: "for carrying money and small personal items"
    "ankle_boot": "boot.n.01",        # "footwear that covers the whole foot and lower leg"
}
