"""Notebook 06's library: activation maps, penultimate features and latent scores.

Maps are checked on a tiny ResNet trained (in a second) to tell a red square from a green one:
asked for "red", a map must sit on the red square wherever it is. Features are checked against a
manual forward pass, the latent scores against silhouettes and centroid distances computed here
by hand on a hand-made example.
"""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from sdml.results import analysis, analysis_report, attention, features, latent
from sdml.models.resnet import resnet_cifar

SIZE = 32


# ----------------------------------------------------------------------------- a tiny trained model

def squares(labels: torch.Tensor, left: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """(B, 3, 32, 32) dark noisy images, each with one 8x8 square: red for class 0, green for 1,
    in the left half where ``left`` else in the right half, at a random height and column."""
    b = len(labels)
    x = 0.1 * torch.randn(b, 3, SIZE, SIZE, generator=generator)
    top = torch.randint(0, SIZE - 8, (b,), generator=generator)
    col = torch.randint(0, SIZE // 2 - 8, (b,), generator=generator) + torch.where(left, 0, SIZE // 2)
    for n in range(b):
        x[n, int(labels[n]), top[n]:top[n] + 8, col[n]:col[n] + 8] += 2.0
    return x


@pytest.fixture(scope="module")
def colour_net():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a tiny network: one thread is fastest on a shared machine
    try:
        gen = torch.Generator().manual_seed(0)
        net = resnet_cifar(depth=8, num_classes=2, width=4, generator=gen)
        opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
        net.train()
        for _ in range(40):
            y = torch.randint(0, 2, (16,), generator=gen)
            left = torch.rand(16, generator=gen) < 0.5
            loss = F.cross_entropy(net(squares(y, left, gen)), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
        net.eval()
        gen = torch.Generator().manual_seed(1)
        y = torch.randint(0, 2, (200,), generator=gen)
        acc = (net(squares(y, torch.rand(200, generator=gen) < 0.5, gen)).argmax(1) == y).float().mean()
        assert acc > 0.95, f"the toy model did not learn its task (accuracy {acc:.2f})"
        yield net
    finally:
        torch.set_num_threads(threads)


def two_squares(red_left: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Images with a red square in one half and a green one in the other."""
    red = squares(torch.zeros(len(red_left), dtype=torch.long), red_left, gen)
    green = squares(torch.ones(len(red_left), dtype=torch.long), ~red_left, gen)
    return red + green


@pytest.mark.parametrize("cam", attention.CAMS)
def test_maps_have_the_image_shape_and_follow_the_class_asked(colour_net, cam):
    gen = torch.Generator().manual_seed(2)
    red_left = torch.arange(16) % 2 == 0
    x = two_squares(red_left, gen)
    left = attention.half_masks(SIZE, SIZE, torch.ones(16, dtype=torch.bool))
    red_maps = attention.class_maps(colour_net, x, torch.zeros(16), cam)
    green_maps = attention.class_maps(colour_net, x, torch.ones(16), cam)
    assert red_maps.shape == green_maps.shape == (16, SIZE, SIZE)
    assert red_maps.min() >= 0 and red_maps.max() <= 1
    # the map of red sits mostly on the red square's half, the map of green on the other half
    # (one map for both classes, blind to the class asked, would give shares summing to 1)
    red_own = attention.region_share(red_maps, torch.where(red_left[:, None, None], left, ~left))
    green_own = attention.region_share(green_maps, torch.where(red_left[:, None, None], ~left, left))
    for own in (red_own, green_own):
        assert (own > 0.55).all() and own.mean() > 0.65, own
    # and the package left no hooks on the network
    assert not colour_net.layer3[-1]._forward_hooks


def test_half_mix_shares_rise_with_the_weight_of_the_class(colour_net):
    gen = torch.Generator().manual_seed(3)
    x = torch.cat([squares(torch.zeros(8, dtype=torch.long), torch.rand(8, generator=gen) < 0.5, gen),
                   squares(torch.ones(8, dtype=torch.long), torch.rand(8, generator=gen) < 0.5, gen)])
    y = torch.cat([torch.zeros(8, dtype=torch.long), torch.ones(8, dtype=torch.long)])
    i, j = torch.arange(8), torch.arange(8, 16)
    a_left = torch.arange(8) % 2 == 0
    shares = attention.half_mix_shares(colour_net, x, y, i, j, a_left, lams=(0.5, 1.0), cams=("Grad-CAM",))
    assert shares.shape == (1, 2, 2, 8)
    mean = shares.nanmean(-1)[0]  # (lams, roles)
    assert mean[1, 0] > 0.75        # class a alone on its half: its map stays there
    assert mean[1, 0] > mean[1, 1]  # class b, weight 0, has no half of its own to look at


# ----------------------------------------------------------------------------- half mixes, pairs

def test_half_mix_is_each_image_on_its_half_at_its_weight():
    gen = torch.Generator().manual_seed(0)
    a, b = torch.randn(3, 3, 4, 6, generator=gen), torch.randn(3, 3, 4, 6, generator=gen)
    lam = torch.tensor([0.5, 0.9, 1.0])
    a_left = torch.tensor([True, False, True])
    x = attention.half_mix(a, b, lam, a_left)
    for n in range(3):
        own, other = (slice(0, 3), slice(3, 6)) if a_left[n] else (slice(3, 6), slice(0, 3))
        torch.testing.assert_close(x[n][..., own], lam[n] * a[n][..., own])
        torch.testing.assert_close(x[n][..., other], (1 - lam[n]) * b[n][..., other])


def test_region_share():
    region = attention.half_masks(2, 4, torch.tensor([True, True, True]))
    maps = torch.stack([torch.ones(2, 4), torch.zeros(2, 4), torch.tensor([[3.0, 1, 0, 0], [0, 0, 0, 4]])])
    share = attention.region_share(maps, region)
    assert share[0] == 0.5 and math.isnan(share[1]) and share[2] == pytest.approx(0.5)


def test_pairs_are_half_siblings_and_half_unrelated():
    y = torch.arange(12).repeat(5)  # 12 classes, 5 images each
    superclass_of = torch.arange(12) // 3  # 4 superclasses of 3 classes
    i, j, same = attention.sample_pairs(y, superclass_of, 40, torch.Generator().manual_seed(0))
    assert len(i) == 40 and int(same.sum()) == 20
    assert (y[i] != y[j]).all()
    assert torch.equal(superclass_of[y[i]] == superclass_of[y[j]], same)
    # with no sibling classes only unrelated pairs can be drawn
    i, j, same = attention.sample_pairs(y, torch.arange(12), 10, torch.Generator().manual_seed(0))
    assert len(i) == 5 and not same.any()


def test_example_pairs_take_the_papers_figure_3_or_the_first_siblings():
    from sdml.hierarchy.superclasses import FINE_NAMES, superclass_of

    assert attention.example_pairs(FINE_NAMES, superclass_of()) == attention.PAPER_EXAMPLES
    names = ("coat", "shirt", "boot")
    assert attention.example_pairs(names, torch.tensor([0, 0, 1])) == (
        ("coat", "shirt", 0.5), ("coat", "boot", 0.9), ("coat", "boot", 0.1))
    with pytest.raises(ValueError, match="superclasses: no class has a sibling"):
        attention.example_pairs(names, torch.tensor([0, 1, 2]))


# ----------------------------------------------------------------------------- features

def manual_penultimate(net, x):
    h = F.relu(net.bn1(net.conv1(x)))
    for stage in (net.layer1, net.layer2, net.layer3):
        for block in stage:
            out = F.relu(block.bn1(block.conv1(h)))
            h = F.relu(block.bn2(block.conv2(out)) + block.shortcut(h))
    return h.mean(dim=(2, 3))


def test_penultimate_features_are_what_the_head_reads():
    net = resnet_cifar(depth=8, num_classes=5, width=4, generator=torch.Generator().manual_seed(0)).eval()
    x = torch.randn(6, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    feats = features.penultimate(net, x)
    assert feats.shape == (6, 16)
    torch.testing.assert_close(feats, manual_penultimate(net, x))
    torch.testing.assert_close(net.fc(feats), net(x))


def fake_trained(tmp_path, peers, data, digest="d1", data_sha="s1"):
    from sdml.hierarchy.superclasses import cifar_superclasses
    from sdml.training.config import make_config

    return features.TrainedRun(tmp_path, make_config("smoke"), peers, data, ("a",),
                               cifar_superclasses(), digest, {"name": "synthetic", "sha256": data_sha})


def test_features_follow_the_test_order_and_are_cached_until_the_checkpoint_changes(tmp_path, monkeypatch):
    from sdml.data.batches import DeviceData, normalize

    gen = torch.Generator().manual_seed(0)
    peers = [resnet_cifar(depth=8, num_classes=3, width=4, generator=gen).eval() for _ in range(2)]
    test_x = torch.randint(0, 256, (7, 3, 8, 8), dtype=torch.uint8, generator=gen)
    mean, std = torch.full((1, 3, 1, 1), 0.5), torch.full((1, 3, 1, 1), 0.25)
    data = DeviceData(test_x, torch.zeros(7, dtype=torch.long), test_x, torch.arange(7) % 3,
                      torch.zeros(7, dtype=torch.long), mean, std)
    got = features.run_features(fake_trained(tmp_path, peers, data), batch_size=3)
    x = normalize(test_x, mean, std)
    expected = torch.stack([manual_penultimate(p, x) for p in peers])
    torch.testing.assert_close(got["features"], expected)
    assert torch.equal(got["y"], torch.arange(7) % 3) and (tmp_path / features.FEATURES).is_file()

    def refuse(*args, **kwargs):
        raise AssertionError("recomputed although the cache was fresh")

    monkeypatch.setattr(features, "test_features", refuse)
    again = features.run_features(fake_trained(tmp_path, peers, data))
    torch.testing.assert_close(again["features"], expected)
    with pytest.raises(AssertionError, match="recomputed"):  # another checkpoint: stale
        features.run_features(fake_trained(tmp_path, peers, data, digest="d2"))
    with pytest.raises(AssertionError, match="recomputed"):  # the same weights, other data: stale
        features.run_features(fake_trained(tmp_path, peers, data, data_sha="s2"))


@pytest.mark.parametrize("num_classes, in_channels", [(100, 3), (10, 1)])  # colour, grayscale
def test_load_peers_reads_the_checkpoint_back(tmp_path, num_classes, in_channels):
    from sdml.io.atomic import atomic_write_json
    from sdml.training import runs
    from sdml.training.config import make_config
    from sdml.training.train import build_model, make_optimizer

    cfg = make_config("smoke", data="synthetic")
    atomic_write_json(tmp_path / runs.CONFIG, {"config": cfg.to_dict()})  # what a run records
    model = build_model(cfg, num_classes, torch.device("cpu"), "loop", in_channels)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.01)  # not the initial weights any more
    runs.save_checkpoint(tmp_path, 1, model, make_optimizer(cfg, model), "loop")
    peers = features.load_peers(tmp_path)
    assert len(peers) == 2 and not peers[0].training
    assert peers[0].conv1.in_channels == in_channels and peers[0].fc.out_features == num_classes
    for peer, original in zip(peers, model.peers):
        for (name, a), b in zip(peer.state_dict().items(), original.state_dict().values()):
            assert torch.equal(a, b), name


# ----------------------------------------------------------------------------- latent scores

def brute_silhouette(x: np.ndarray, labels: np.ndarray) -> float:
    """Rousseeuw's silhouette written out: s = (b - a) / max(a, b), averaged over the samples."""
    d = np.sqrt(((x[:, None] - x[None]) ** 2).sum(-1))
    scores = []
    for n in range(len(x)):
        own = labels == labels[n]
        if own.sum() == 1:
            scores.append(0.0)
            continue
        a = d[n, own].sum() / (own.sum() - 1)
        b = min(d[n, labels == other].mean() for other in set(labels) - {labels[n]})
        scores.append((b - a) / max(a, b))
    return float(np.mean(scores))


HAND = torch.tensor([[0.0, 0.0], [0.2, 0.0], [1.0, 0.0], [1.0, 0.4],      # classes 0, 1 (sc 0)
                     [10.0, 0.0], [10.0, 0.6], [10.0, 2.0], [10.4, 2.0]])  # classes 2, 3 (sc 1)
HAND_Y = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
HAND_SC = torch.tensor([0, 0, 1, 1])


def test_silhouettes_equal_a_direct_computation():
    x, y = HAND.numpy(), HAND_Y.numpy()
    assert latent.superclass_silhouette(HAND, HAND_Y, HAND_SC) == pytest.approx(
        brute_silhouette(x, HAND_SC.numpy()[y]))
    inside = [brute_silhouette(x[y < 2], y[y < 2]), brute_silhouette(x[y >= 2], y[y >= 2])]
    assert latent.within_superclass_silhouette(HAND, HAND_Y, HAND_SC) == pytest.approx(np.mean(inside))


def test_sibling_ratio_equals_the_centroid_distances_by_hand():
    # centroids: (0.1, 0), (1, 0.2) in superclass 0; (10, 0.3), (10.2, 2) in superclass 1
    sib = (math.hypot(0.9, 0.2) + math.hypot(0.2, 1.7)) / 2
    non = (math.hypot(9.9, 0.3) + math.hypot(10.1, 2) + math.hypot(9, 0.1) + math.hypot(9.2, 1.8)) / 4
    assert latent.sibling_ratio(HAND, HAND_Y, HAND_SC) == pytest.approx(sib / non)
    scores = latent.latent_metrics(HAND, HAND_Y, HAND_SC)
    assert latent.latent_metrics(7 * HAND, HAND_Y, HAND_SC) == pytest.approx(scores)  # scale-free
    assert math.isnan(latent.sibling_ratio(HAND, HAND_Y, torch.arange(4)))  # no siblings


def test_members_and_balanced_subsample():
    feats = torch.arange(2 * 3 * 2.0).reshape(2, 3, 2)  # (K, N, F)
    got = latent.members(feats)
    assert list(got) == ["model 1", "model 2", "pair"]
    torch.testing.assert_close(got["pair"], torch.cat([feats[0], feats[1]], dim=1))
    y = torch.tensor([0] * 10 + [1] * 3)
    index = latent.balanced_subsample(y, 6, torch.Generator().manual_seed(0))
    assert torch.bincount(y[index]).tolist() == [3, 3] and len(set(index.tolist())) == 6


def test_projections_give_two_coordinates_per_point():
    x = torch.randn(40, 5, generator=torch.Generator().manual_seed(0))
    for how in latent.PROJECTIONS:
        assert latent.project(x, how).shape == (40, 2)
    with pytest.raises(ValueError, match="projection: 'umap'"):
        latent.project(x, "umap")


# ----------------------------------------------------------------------------- tables

def test_attention_frame_puts_each_class_at_its_own_weight(tmp_path, monkeypatch):
    # shares (K=1, cams=1, lams=2, roles=2, pairs=2); pair 0 siblings, pair 1 not
    shares = torch.tensor([[[[[0.6, 0.2], [0.4, 0.8]], [[0.9, 0.7], [0.1, float("nan")]]]]])
    monkeypatch.setattr(analysis, "run_attention",
                        lambda *a, **k: {"shares": shares, "same": torch.tensor([True, False])})
    frame = analysis.attention_frame([fake_trained(tmp_path, [], None)], lams=(0.5, 1.0), cams=("Grad-CAM",))
    same = frame[frame["relation"] == "same superclass"].set_index("weight")
    other = frame[frame["relation"] == "different superclasses"].set_index("weight")
    assert same.loc[0.5, "share"] == pytest.approx((0.6 + 0.4) / 2)  # a and b both at 0.5
    assert same.loc[1.0, "share"] == pytest.approx(0.9) and same.loc[0.0, "share"] == pytest.approx(0.1)
    assert math.isnan(other.loc[0.0, "share"]) and other.loc[0.0, "n"] == 0
    spread = analysis.attention_spread(frame)
    assert spread["n"].eq(1).all()


def test_sibling_verdict_says_when_one_seed_cannot_tell():
    import pandas as pd

    spread = pd.DataFrame([
        {"group": "none", "member": "pair", "metric": "sibling_ratio", "mean": 0.8, "std": 0.01, "n": 3},
        {"group": "superclass-beta", "member": "pair", "metric": "sibling_ratio", "mean": 0.7,
         "std": 0.02, "n": 3},
        {"group": "mixup", "member": "pair", "metric": "sibling_ratio", "mean": 0.81, "std": math.nan, "n": 1}])
    text = analysis_report.sibling_verdict(spread)
    assert "superclass-beta: 0.700 ± 0.020 (n=3); siblings closer together than without mixup by 0.100 " \
           "(more than twice the seeds' spread)" in text
    assert "mixup: 0.810; siblings further apart than without mixup by 0.010 (one run each" in text
    wordnet = spread.assign(group=spread["group"] + " (wordnet)")  # compared within one source
    assert "superclass-beta (wordnet): 0.700 ± 0.020 (n=3); siblings closer" in \
        analysis_report.sibling_verdict(wordnet)
    assert "no run 'none' to compare with" in analysis_report.sibling_verdict(spread[1:])
