"""WordNet: finding it offline, the class synsets, the tree, derived superclasses, agreement, soft alpha.

Everything runs offline: WordNet comes from a system WordNet 3.0 (Debian's wordnet-base +
wordnet-sense-index) copied into a temporary cache, with ``nltk.data.path`` patched so that the
developer's own nltk data is never used.
"""
from __future__ import annotations

import math
import os
import shutil
import socket
import stat

import nltk
import numpy as np
import pytest
import torch
from scipy.cluster.hierarchy import fcluster, linkage
from scipy.spatial.distance import squareform
from scipy.stats import entropy

from sdml.hierarchy import wordnet
from sdml.hierarchy.superclasses import (COARSE_NAMES, FINE_NAMES, FINE_TO_COARSE, MAPPINGS_DIR,
                                         cifar_superclasses, from_json, load_mapping)
from sdml.hierarchy.wordnet import (CLASS_SYNSETS, DB_FILES, LEXNAMES, Tree, agreement, build_tree,
                                    check_version, derive_superclasses, get_wordnet, lexnames_text,
                                    load_similarity, load_tree, normalised_similarity,
                                    run_hierarchy, similarity_matrix, soft_beta_alpha)
from sdml.hierarchy.wordnet_groups import (_group_names, adjusted_rand_index, average_linkage,
                                           contingency_table, normalized_mutual_info)

ANIMAL = {"noun.animal"}
ARTIFACT = {"noun.artifact"}
#: Lexicographer files allowed for the synsets of each CIFAR-100 superclass.
ALLOWED_LEXFILES = {
    "aquatic_mammals": ANIMAL, "fish": ANIMAL, "insects": ANIMAL, "large_carnivores": ANIMAL,
    "large_omnivores_and_herbivores": ANIMAL, "medium_mammals": ANIMAL,
    "non-insect_invertebrates": ANIMAL, "reptiles": ANIMAL, "small_mammals": ANIMAL,
    "flowers": {"noun.plant"}, "trees": {"noun.plant"},
    "fruit_and_vegetables": {"noun.food", "noun.plant"},
    "people": {"noun.person"},
    "food_containers": ARTIFACT, "household_electrical_devices": ARTIFACT,
    "household_furniture": ARTIFACT, "large_man-made_outdoor_things": ARTIFACT,
    "vehicles_1": ARTIFACT, "vehicles_2": ARTIFACT,
    "large_natural_outdoor_scenes": {"noun.object", "noun.phenomenon"},
}


def _system_dir():
    for d in wordnet.default_system_dirs():
        if all((d / f).is_file() for f in DB_FILES):
            return d
    return None


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """(reader, cache, source dir): the system WordNet copied into a fresh cache, loaded once."""
    src = _system_dir()
    if src is None:
        pytest.skip("no system WordNet 3.0 (install Debian wordnet-base wordnet-sense-index or set WNHOME)")
    cache = tmp_path_factory.mktemp("nltk_data")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(nltk.data, "path", [])
        mp.delenv(wordnet.ENV_CACHE, raising=False)
        wn = get_wordnet(cache, download=False, system_dirs=[src])
        wn.synset("entity.n.01")  # opens data.noun while the cache is on the data path
        yield wn, cache, src


@pytest.fixture(scope="module")
def wn(setup):
    return setup[0]


@pytest.fixture(scope="module")
def tree(wn):
    return build_tree(wn)


@pytest.fixture
def no_data(monkeypatch):
    monkeypatch.setattr(nltk.data, "path", [])


def _private_corpus(root, data_adj: str | None = None):
    """``root/corpora/wordnet`` made as nltk accepts it whatever the umask (no group/other write)."""
    corpus = root / "corpora" / "wordnet"
    corpus.mkdir(parents=True)
    if data_adj is not None:
        (corpus / "data.adj").write_text(data_adj)
        (corpus / "data.adj").chmod(0o644)
    for d in (root, root / "corpora", corpus):
        d.chmod(0o755)
    return corpus


# --- getting WordNet ---------------------------------------------------------------------------

def test_lexnames_table_is_the_wordnet_30_one(wn):
    lines = lexnames_text().splitlines()
    assert len(lines) == len(LEXNAMES) == 45
    assert lines[0] == "00\tadj.all\t3" and lines[5] == "05\tnoun.animal\t1" and lines[44] == "44\tadj.ppl\t3"
    assert [int(line.split("\t")[0]) for line in lines] == list(range(45))
    categories = {"noun": "1", "verb": "2", "adj": "3", "adv": "4"}
    assert all(line.split("\t")[2] == categories[line.split("\t")[1].split(".")[0]] for line in lines)
    # the reader resolves lexicographer files through this table
    assert wn.synset("dolphin.n.02").lexname() == "noun.animal"
    assert wn.synset("run.v.01").lexname() == "verb.motion"


def test_system_wordnet_is_copied_privately_into_the_cache(setup):
    wn, cache, src = setup
    assert wn.get_version() == "3.0"
    corpus = cache / "corpora" / "wordnet"
    for name in DB_FILES + ("lexnames",):
        path = corpus / name
        assert path.is_file() and not path.is_symlink()
        assert not path.stat().st_mode & (stat.S_IWGRP | stat.S_IWOTH)  # nltk refuses shared files
    for name in DB_FILES:
        assert (corpus / name).stat().st_size == (src / name).stat().st_size
    assert (corpus / "noun.exc").read_bytes() == (src / "noun.exc").read_bytes()


def test_cache_is_reused_without_copying(setup, monkeypatch, no_data):
    _, cache, src = setup
    monkeypatch.setattr(wordnet, "_open_reader", lambda root: root)  # skip parsing; test the steps
    monkeypatch.setattr(shutil, "copyfile", lambda *a, **k: pytest.fail("copied again"))
    root = get_wordnet(cache, download=False, system_dirs=[src])
    assert os.path.samefile(str(root), cache / "corpora" / "wordnet")
    assert str(cache.resolve()) in nltk.data.path


def test_download_is_tried_before_the_system_copy(tmp_path, monkeypatch, no_data):
    calls = []

    def fake_download(name, download_dir, quiet, raise_on_error):
        calls.append((name, download_dir, quiet, raise_on_error))
        _private_corpus(tmp_path)
        return True

    monkeypatch.setattr(wordnet, "_unreachable", lambda url, timeout_s: None)
    monkeypatch.setattr(nltk, "download", fake_download)
    monkeypatch.setattr(wordnet, "_copy_system", lambda *a: pytest.fail("system copy tried"))
    monkeypatch.setattr(wordnet, "_open_reader", lambda root: root)
    root = get_wordnet(tmp_path)
    assert calls == [("wordnet", str(tmp_path.resolve()), True, True)]
    assert os.path.samefile(str(root), tmp_path / "corpora" / "wordnet")


def test_a_damaged_cached_copy_is_replaced_not_a_poison(tmp_path, monkeypatch, no_data):
    src = _system_dir()
    if src is None:
        pytest.skip("no system WordNet 3.0 (install Debian wordnet-base wordnet-sense-index or set WNHOME)")
    # a copy cut short: the right header, the rest of the database missing
    corpus = _private_corpus(tmp_path, "  1 header\n  2 WordNet 3.0 Copyright 2006 by Princeton University.\n")
    with pytest.raises(FileNotFoundError, match=r"does not load .*delete that folder"):
        get_wordnet(tmp_path, download=False, system_dirs=[])
    wn = get_wordnet(tmp_path, download=False, system_dirs=[src])  # the system copy replaces it
    assert wn.get_version() == "3.0" and wn.synset("dolphin.n.02").lexname() == "noun.animal"
    assert (corpus / "index.noun").read_bytes() == (src / "index.noun").read_bytes()
    assert get_wordnet(tmp_path, download=False, system_dirs=[]).get_version() == "3.0"  # cured


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_all_steps_failing_names_each_reason_and_the_fixes(tmp_path, monkeypatch, no_data):
    port = _closed_port()
    monkeypatch.setattr(nltk.downloader.Downloader, "DEFAULT_URL", f"http://127.0.0.1:{port}/index.xml")
    monkeypatch.setattr(nltk, "download", lambda *a, **k: pytest.fail("downloaded while offline"))
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    partial, old = tmp_path / "partial", tmp_path / "old"
    partial.mkdir()
    (partial / "data.noun").write_text("")
    old.mkdir()
    for name in DB_FILES:
        (old / name).write_text("")
    (old / "data.adj").write_text("  1 text\n  2 WordNet 2.1 Copyright 2005 by Princeton University.\n")
    with pytest.raises(FileNotFoundError) as err:
        get_wordnet(tmp_path / "cache", system_dirs=[tmp_path / "absent", partial, old], timeout_s=2)
    msg = str(err.value)
    assert "1. nltk data path: no 'corpora/wordnet'" in msg
    assert f"2. nltk.download: offline: cannot connect to 127.0.0.1:{port}" in msg
    assert f"{tmp_path / 'absent'}: no such folder" in msg
    assert f"{partial}: missing cntlist.rev" in msg and "data.noun," not in msg
    assert f"{old}: WordNet 2.1, not 3.0" in msg
    assert "nltk.download('wordnet')" in msg and "wordnet-base wordnet-sense-index" in msg and "WNHOME" in msg
    assert str(tmp_path / "cache" / "corpora" / "wordnet") in msg
    assert not (tmp_path / "cache" / "corpora" / "wordnet").exists()


def test_download_errors_and_skips_are_reported(tmp_path, monkeypatch, no_data):
    def failing(*a, **k):
        raise ValueError("simulated server error")

    monkeypatch.setattr(wordnet, "_unreachable", lambda url, timeout_s: None)
    monkeypatch.setattr(nltk, "download", failing)
    with pytest.raises(FileNotFoundError, match="failed: simulated server error"):
        get_wordnet(tmp_path, system_dirs=[])
    with pytest.raises(FileNotFoundError, match=r"2\. nltk.download: skipped \(download=False\)"):
        get_wordnet(tmp_path, download=False, system_dirs=[])


def test_reachability_probe(monkeypatch):
    for var in ("http_proxy", "HTTP_PROXY", "no_proxy", "NO_PROXY"):
        monkeypatch.delenv(var, raising=False)
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        assert wordnet._unreachable(f"http://127.0.0.1:{server.getsockname()[1]}/x", 2) is None
    port = _closed_port()
    assert "cannot connect to 127.0.0.1" in wordnet._unreachable(f"http://127.0.0.1:{port}/x", 2)
    # behind a proxy, the proxy is what must answer
    monkeypatch.setenv("http_proxy", f"http://127.0.0.1:{port}")
    assert f"127.0.0.1:{port}" in wordnet._unreachable("http://example.invalid/index.xml", 2)


def test_a_wordnet_that_is_not_30_is_refused(tmp_path, monkeypatch):
    _private_corpus(tmp_path, "  1 header\n  2 WordNet 3.1 Copyright 2011 by Princeton University.\n")
    monkeypatch.setattr(nltk.data, "path", [str(tmp_path)])
    with pytest.raises(ValueError, match=r"WordNet 3\.1; allowed: WordNet 3\.0"):
        get_wordnet(tmp_path, download=False, system_dirs=[])

    class Reader:
        def get_version(self):
            return "3.1"

    with pytest.raises(ValueError, match="allowed: WordNet 3.0"):
        check_version(Reader())


def test_default_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv(wordnet.ENV_CACHE, str(tmp_path / "mine"))
    assert wordnet.default_cache_dir() == tmp_path / "mine"
    monkeypatch.delenv(wordnet.ENV_CACHE)
    assert wordnet.default_cache_dir().parts[-2:] == (".cache", "nltk_data")


# --- class synsets ------------------------------------------------------------------------------

def test_each_class_has_a_noun_synset_in_a_fitting_lexicographer_file(wn):
    assert list(CLASS_SYNSETS) == list(FINE_NAMES)
    assert len(set(CLASS_SYNSETS.values())) == 100
    for fine, coarse in zip(FINE_NAMES, FINE_TO_COARSE):
        synset = wn.synset(CLASS_SYNSETS[fine])
        assert synset.pos() == "n", fine
        assert synset.lexname() in ALLOWED_LEXFILES[COARSE_NAMES[coarse]], (fine, synset.lexname())


def test_each_synset_is_a_sense_of_the_class_name(wn):
    for fine, name in CLASS_SYNSETS.items():
        if fine == "aquarium_fish":  # no such lemma; goldfish is documented as the stand-in
            assert "aquarium" in wn.synset(name).definition()
            continue
        senses = {s.name() for s in wn.synsets(fine, "n")} | {s.name() for s in wn.synsets(fine.removesuffix("_tree"), "n")}
        assert name in senses, fine


def test_senses_where_the_first_sense_is_wrong(wn):
    picks = {"dolphin": "dolphin.n.02", "skunk": "skunk.n.04", "television": "television_receiver.n.01",
             "trout": "trout.n.02", "ray": "ray.n.07", "seal": "seal.n.09", "plate": "plate.n.04",
             "table": "table.n.02", "castle": "castle.n.02", "cloud": "cloud.n.02", "whale": "whale.n.02"}
    for fine, name in picks.items():
        assert CLASS_SYNSETS[fine] == name
        assert wn.synsets(fine, "n")[0].name() != name, fine
    assert CLASS_SYNSETS["mouse"] == "mouse.n.01" and wn.synset("mouse.n.01").lexname() == "noun.animal"
    assert CLASS_SYNSETS["tank"] == "tank.n.01" and "armored" in wn.synset("tank.n.01").definition()


# --- the tree -----------------------------------------------------------------------------------

def test_every_class_reaches_entity_and_depths_count_nodes(tree):
    for fine in FINE_NAMES:
        path = tree.path(fine)
        assert path[0] == "entity.n.01" and path[-1] == CLASS_SYNSETS[fine]
        assert [tree.depth[n] for n in path] == list(range(1, len(path) + 1))
    assert tree.parent["entity.n.01"] is None and tree.root == "entity.n.01"


def test_tree_keeps_the_longest_hypernym_path(wn, tree):
    for node, up in tree.parent.items():
        synset = wn.synset(node)
        assert tree.depth[node] == synset.max_depth() + 1  # nltk: longest path, in edges
        if up is not None:
            assert up in {h.name() for h in synset.hypernyms() + synset.instance_hypernyms()}


def test_lowest_common_ancestor(tree):
    assert tree.lca("dolphin", "whale") == "whale.n.02"  # a class can be an inner node
    assert tree.lca("tulip", "tulip") == "tulip.n.01"
    for a, b in [("orchid", "tulip"), ("bear", "wolf"), ("bus", "train"), ("apple", "sweet_pepper")]:
        lca, pa, pb = tree.lca(a, b), tree.path(a), tree.path(b)
        assert lca == tree.lca(b, a) and lca in pa and lca in pb
        below = pa[pa.index(lca) + 1:pa.index(lca) + 2]
        assert not below or below[0] not in pb  # nothing deeper is shared
    assert tree.lca("orchid", "poppy") == "flower.n.01"


def test_similarity_is_wu_palmer_on_the_tree(wn, tree):
    sim = similarity_matrix(tree)
    assert sim.shape == (100, 100) and sim.dtype == torch.float32
    assert torch.equal(sim, sim.T) and torch.all(sim.diagonal() == 1)
    assert bool(((sim > 0) & (sim <= 1)).all())
    # where a class has one hypernym path the tree is WordNet itself: nltk's Wu-Palmer agrees
    single = [i for i, f in enumerate(FINE_NAMES) if len(wn.synset(CLASS_SYNSETS[f]).hypernym_paths()) == 1]
    assert len(single) > 60
    for i in single[::3]:
        for j in single[1::7]:
            a, b = wn.synset(CLASS_SYNSETS[FINE_NAMES[i]]), wn.synset(CLASS_SYNSETS[FINE_NAMES[j]])
            assert sim[i, j].item() == pytest.approx(a.wup_similarity(b), abs=1e-6)
    path = similarity_matrix(tree, kind="path", dtype=torch.float64)
    i, j = FINE_NAMES.index("dolphin"), FINE_NAMES.index("whale")
    assert path[i, j].item() == pytest.approx(1 / 3)  # dolphin -> toothed_whale -> whale: 2 edges
    with pytest.raises(ValueError, match="kind"):
        similarity_matrix(tree, kind="lch")


def test_committed_tree_matches_a_fresh_one(tree):
    assert load_tree().to_json() == tree.to_json()
    assert Tree.from_json(tree.to_json()).to_json() == tree.to_json()
    assert torch.equal(load_similarity(), tree.similarity_matrix())


# --- derived superclasses -----------------------------------------------------------------------

@pytest.mark.parametrize("k", [0, 1, 100, 2.5, True, "20"])
def test_k_outside_2_to_99_is_refused(tree, k):
    with pytest.raises(ValueError, match=r"k: .* allowed: an integer in 2\.\.99"):
        derive_superclasses(tree, k)


@pytest.mark.parametrize("k", [2, 7, 20, 99])
def test_derive_gives_k_nonempty_groups_named_by_their_lca(tree, k):
    sc = derive_superclasses(tree, k)
    assert sc.k == k and sc.name == f"wordnet_k{k}"
    assert sorted(set(sc.of.tolist())) == list(range(k))
    assert len(set(sc.superclass_names)) == k
    firsts = [sc.members(g)[0] for g in range(k)]
    assert firsts == sorted(firsts, key=FINE_NAMES.index)  # numbered by smallest member
    for g, name in enumerate(sc.superclass_names):
        assert name.split("/")[0] == tree.lca_of(sc.members(g))
    again = derive_superclasses(tree, k)
    assert again.to_json() == sc.to_json()


@pytest.mark.parametrize("k", [2, 10, 20, 50])
def test_average_linkage_matches_scipy_without_ties(k):
    rng = np.random.default_rng(k)
    x = rng.normal(size=(100, 5))
    dist = np.sqrt(((x[:, None] - x[None]) ** 2).sum(-1))  # (100, 100)
    sim = 1 - dist / dist.max()
    ours = average_linkage(sim, k)
    ref = fcluster(linkage(squareform(1 - sim, checks=False), "average"), k, "maxclust")
    assert len(set(ref)) == k
    assert adjusted_rand_index(contingency_table(ours, ref)) == pytest.approx(1.0)


def test_derive_from_a_block_similarity():
    blocks = np.arange(100) % 4
    sim = np.where(blocks[:, None] == blocks[None], 0.9, 0.1)
    np.fill_diagonal(sim, 1.0)
    sc = derive_superclasses(torch.tensor(sim), 4)
    assert sc.of.tolist() == blocks.tolist() and sc.name == "similarity_k4"
    assert sc.superclass_names == ("group:apple", "group:aquarium_fish", "group:baby", "group:bear")
    with pytest.raises(ValueError, match="tree_or_similarity: shape"):
        derive_superclasses(torch.ones(10, 10), 4)


def test_groups_sharing_an_ancestor_get_distinct_names():
    flat = Tree({"r.n.01": None, **{f"c{i}.n.01": "r.n.01" for i in range(100)}},
                [f"c{i}.n.01" for i in range(100)])
    names = _group_names([[0, 1], [2, 3], [4]], flat)
    assert names == ["r.n.01/apple", "r.n.01/baby", "c4.n.01"]
    with pytest.raises(ValueError, match="cycle"):
        Tree({"r.n.01": None, "a": "b", "b": "a", **{f"c{i}": "r.n.01" for i in range(100)}},
             [f"c{i}" for i in range(100)])


def test_committed_k20_mapping_matches_a_fresh_derivation(tree):
    committed = load_mapping(MAPPINGS_DIR / "wordnet_k20.json")
    assert committed.to_json() == derive_superclasses(tree, 20).to_json()
    assert wordnet.wordnet_superclasses(20).to_json() == committed.to_json()


def test_run_hierarchy_writes_the_mapping_and_reports_agreement(wn, tmp_path, monkeypatch):
    monkeypatch.setattr(wordnet, "get_wordnet", lambda cache_dir=None: wn)
    out = run_hierarchy(20, tmp_path / "k20.json", tree_out=tmp_path / "tree.json")
    assert load_mapping(tmp_path / "k20.json").to_json() == load_mapping(MAPPINGS_DIR / "wordnet_k20.json").to_json()
    assert load_tree(tmp_path / "tree.json").to_json() == load_tree().to_json()
    ref = agreement(load_mapping(tmp_path / "k20.json"), cifar_superclasses())
    assert out["ari"] == ref["ari"] and out["nmi"] == ref["nmi"] and out["k"] == 20
    assert 0 < out["ari"] < 1 and 0 < out["nmi"] < 1


def test_bad_json_mappings_are_refused():
    good = cifar_superclasses().to_json()
    unknown = {**good, "classes": {**good["classes"], "unicorn": 0}}
    missing = {**good, "classes": {k: v for k, v in good["classes"].items() if k != "apple"}}
    out_of_range = {**good, "classes": {**good["classes"], "apple": 20}}
    boolean = {**good, "classes": {**good["classes"], "apple": True}}
    with pytest.raises(ValueError, match="unknown class name"):
        from_json(unknown)
    with pytest.raises(ValueError, match="have no superclass"):
        from_json(missing)
    for bad in (out_of_range, boolean):
        with pytest.raises(ValueError, match=r"allowed: an integer in 0\.\.19"):
            from_json(bad)


# --- agreement ----------------------------------------------------------------------------------

def test_ari_and_nmi_on_a_hand_computed_example():
    a, b = [0, 0, 0, 1, 1, 1], [0, 0, 1, 1, 2, 2]
    table = contingency_table(a, b)
    assert table.tolist() == [[2, 1, 0], [0, 1, 2]]
    # sum C(n_ij,2) = 2; rows 3 + 3 = 6; cols 1 + 1 + 1 = 3; E = 6 * 3 / 15 = 1.2; M = 4.5
    assert adjusted_rand_index(table) == pytest.approx((2 - 1.2) / (4.5 - 1.2))
    # I = (2/3) ln 2, H(a) = ln 2, H(b) = ln 3
    assert normalized_mutual_info(table) == pytest.approx((2 / 3) * math.log(2) / (math.log(6) / 2))
    assert adjusted_rand_index(contingency_table(a, a)) == 1.0
    assert normalized_mutual_info(contingency_table([0, 0, 0], [0, 0, 0])) == 1.0


def test_nmi_equals_the_entropy_identity_on_random_labels():
    rng = np.random.default_rng(0)
    a, b = rng.integers(0, 6, 300), rng.integers(0, 4, 300)
    table = contingency_table(a, b)
    ha, hb, hab = entropy(table.sum(1)), entropy(table.sum(0)), entropy(table.ravel())
    assert normalized_mutual_info(table) == pytest.approx((ha + hb - hab) / ((ha + hb) / 2))
    assert abs(adjusted_rand_index(table)) < 0.05  # independent labels


def test_agreement_of_mappings(tree):
    cifar = cifar_superclasses()
    same = agreement(cifar, cifar)
    assert same["ari"] == pytest.approx(1.0) and same["nmi"] == pytest.approx(1.0)
    relabelled = type(cifar)("shuffled", cifar.superclass_names[::-1], 19 - cifar.of)
    assert agreement(cifar, relabelled)["ari"] == pytest.approx(1.0)
    wn20 = derive_superclasses(tree, 20)
    ab, ba = agreement(wn20, cifar), agreement(cifar, wn20)
    assert ab["ari"] == pytest.approx(ba["ari"]) and ab["nmi"] == pytest.approx(ba["nmi"])
    assert np.array(ab["contingency"]).T.tolist() == ba["contingency"]
    assert np.array(ab["contingency"]).shape == (20, 20) and np.array(ab["contingency"]).sum() == 100
    assert ab["rows"] == list(wn20.superclass_names) and ab["cols"] == list(COARSE_NAMES)


# --- soft Beta parameter ------------------------------------------------------------------------

def test_soft_beta_alpha_end_points_and_log_interpolation():
    t = torch.tensor([0.0, 0.25, 0.5, 1.0], dtype=torch.float64)
    a = soft_beta_alpha(t)
    assert a[0].item() == 0.2 and a[-1].item() == 8.0
    assert a[2].item() == pytest.approx(math.sqrt(0.2 * 8.0))  # geometric mean at t = 1/2
    assert a[1].item() == pytest.approx(0.2 * 40 ** 0.25)
    dense = soft_beta_alpha(torch.linspace(0, 1, 101, dtype=torch.float64), same_alpha=4.0, diff_alpha=0.5)
    assert bool((dense.diff() > 0).all()) and dense[0].item() == 0.5 and dense[-1].item() == 4.0


def test_soft_beta_alpha_bad_input():
    with pytest.raises(ValueError, match="similarity_pairs"):
        soft_beta_alpha(torch.tensor([0.5, 1.5]))
    for kw in ({"same_alpha": 0.0}, {"diff_alpha": -1.0}, {"same_alpha": float("inf")}):
        with pytest.raises(ValueError, match=next(iter(kw))):
            soft_beta_alpha(torch.tensor([0.5]), **kw)


def test_normalised_similarity(tree):
    sim = tree.similarity_matrix(dtype=torch.float64)
    t = normalised_similarity(sim)
    off = ~torch.eye(100, dtype=torch.bool)
    assert t.dtype == torch.float64 and torch.all(t.diagonal() == 1)
    assert t[off].min().item() == 0.0 and t[off].max().item() == pytest.approx(1.0)
    order = torch.argsort(sim[off], stable=True)
    assert bool((t[off][order].diff() >= 0).all())  # the order of similarities is kept
    alpha = soft_beta_alpha(t)
    assert alpha.min().item() == 0.2 and alpha.max().item() == 8.0
    for bad, match in [(torch.ones(3, 3), "shape"), (torch.rand(100, 100, generator=torch.Generator().manual_seed(0)), "symmetric"),
                       (torch.ones(100, 100), "nothing to normalise")]:
        with pytest.raises(ValueError, match=match):
            normalised_similarity(bad)
