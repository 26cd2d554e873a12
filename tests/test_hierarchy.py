"""CIFAR-100's classes and superclasses, checked against the dataset's own coarse labels."""
import pytest
import torch

from sdml.hierarchy import superclasses as hierarchy
from sdml.hierarchy.resolve import resolve_superclasses

# The coarse label of each fine label as CIFAR-100's pickles carry it (fine labels in order
# apple, aquarium_fish, baby, ...), written out independently of the grouping in the module.
ARCHIVE_COARSE = [
    4, 1, 14, 8, 0, 6, 7, 7, 18, 3, 3, 14, 9, 18, 7, 11, 3, 9, 7, 11, 6, 11, 5, 10, 7, 6, 13, 15,
    3, 15, 0, 11, 1, 10, 12, 14, 16, 9, 11, 5, 5, 19, 8, 8, 15, 13, 14, 17, 18, 10, 16, 4, 17, 4,
    2, 0, 17, 4, 18, 17, 10, 3, 2, 12, 12, 16, 12, 1, 9, 19, 2, 10, 0, 1, 16, 12, 9, 13, 15, 13,
    16, 19, 2, 4, 6, 19, 5, 5, 8, 19, 18, 1, 2, 15, 6, 0, 17, 8, 14, 13,
]


def test_superclass_of_equals_the_archive_labels():
    assert hierarchy.superclass_of().tolist() == ARCHIVE_COARSE
    assert hierarchy.superclass_of().dtype == torch.long


def test_names_and_group_sizes():
    assert len(hierarchy.FINE_NAMES) == 100 and len(set(hierarchy.FINE_NAMES)) == 100
    assert list(hierarchy.FINE_NAMES) == sorted(hierarchy.FINE_NAMES)
    assert hierarchy.COARSE_NAMES[0] == "aquatic_mammals" and hierarchy.COARSE_NAMES[-1] == "vehicles_2"
    assert torch.bincount(hierarchy.superclass_of()).tolist() == [5] * 20
    sc = hierarchy.cifar_superclasses()
    assert sc.members(hierarchy.COARSE_NAMES.index("flowers")) == ["orchid", "poppy", "rose", "sunflower", "tulip"]


def test_json_round_trip(tmp_path):
    sc = hierarchy.cifar_superclasses()
    hierarchy.save_mapping(sc, tmp_path / "m.json")
    back = hierarchy.load_mapping(tmp_path / "m.json")
    assert back.superclass_names == sc.superclass_names and torch.equal(back.of, sc.of)


@pytest.mark.parametrize("edit, field", [
    (lambda d: d["classes"].update({"unicorn": 0}), "unknown class"),
    (lambda d: d["classes"].pop("apple"), "no superclass"),
    (lambda d: d["classes"].update({"apple": 20}), "classes['apple']"),
    (lambda d: d["classes"].update({"apple": -1}), "classes['apple']"),
    (lambda d: d.update({"superclass_names": []}), "superclass_names"),
])
def test_bad_mappings_are_refused(edit, field):
    d = hierarchy.cifar_superclasses().to_json()
    edit(d)
    with pytest.raises(ValueError) as err:
        hierarchy.from_json(d, "m.json")
    assert field in str(err.value)


def test_resolve_superclasses(tmp_path):
    assert resolve_superclasses("cifar").name == "cifar"
    wn = resolve_superclasses("wordnet", 20)
    assert wn.k == 20 and wn.of.shape == (100,)
    with pytest.raises(ValueError, match="does not exist; allowed: auto, cifar, wordnet or the path"):
        resolve_superclasses(str(tmp_path / "missing.json"))
    (tmp_path / "folder.json").mkdir()
    with pytest.raises(ValueError, match="folder.json' is a folder, not a file"):
        resolve_superclasses(str(tmp_path / "folder.json"))
