"""Mixing ratios of every method and superclass case, the Beta sampler, batch mixing, errors.

Distributions are checked with a Kolmogorov-Smirnov test against scipy's Beta laws, with
moments, and with tail fractions, all on a fixed generator seed. A test fails by chance with
probability about 1e-3 per KS check at most, and never with the seeds used here.
"""
import math

import numpy as np
import pytest
import scipy.stats as st
import torch

from sdml.hierarchy.superclasses import FINE_NAMES, superclass_of
from sdml.method.mixup import (DEFAULTS, METHODS, mix_batch, mix_images, mixed_target, partners,
                               resolve_params, same_superclass, sample_beta, sample_ratios)

N = 20000  # draws per distribution check
SC = superclass_of()  # (100,) superclass id of each fine label
LABEL = {name: i for i, name in enumerate(FINE_NAMES)}


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def pair(a: str, b: str, n: int = N):
    """n copies of the pair (a, b) as (y, y_partner) label tensors."""
    return torch.full((n,), LABEL[a], dtype=torch.long), torch.full((n,), LABEL[b], dtype=torch.long)


def ks_pvalue(x, dist, top: float = 1 - 1e-6) -> float:
    """KS p-value of samples ``x`` against ``dist``, with the sup taken over [0, top] only.

    The ratios come back as float32, which rounds every draw within 2^-25 of 1 to exactly 1.0;
    under Beta(0.2, 0.2) that is ~1.5 % of the draws, a jump the plain KS statistic would count
    as a discrepancy of that size. Restricting the sup to [0, top] ignores this rounding; a sup over
    a subset is never larger, so the KS p-value stays valid (conservative). The mass above ``top``
    is checked separately by :func:`tail_ok`.
    """
    x = np.sort(np.asarray(x, dtype=np.float64))
    n = x.size
    cdf = dist.cdf(x)
    i = np.arange(1, n + 1)
    keep = x < top
    d = 0.0
    if keep.any():
        d = max((i / n - cdf)[keep].max(), (cdf - (i - 1) / n)[keep].max())
    d = max(d, abs(keep.mean() - dist.cdf(top)))  # at the right end of [0, top]
    return float(st.kstwo.sf(d, n))


def tail_ok(x, p: float, sigmas: float = 5.0) -> bool:
    """Whether the fraction of True in ``x`` is within ``sigmas`` binomial sd of ``p``."""
    x = np.asarray(x)
    sd = math.sqrt(p * (1 - p) / x.size)
    return abs(x.mean() - p) <= sigmas * sd + 1.0 / x.size


def check_beta(x: torch.Tensor, a: float, b: float) -> None:
    """Assert that ``x`` looks like n draws of Beta(a, b): KS, mean, variance and both tails."""
    assert x.dtype == torch.float32
    v = x.double().numpy()
    assert np.all((v >= 0) & (v <= 1))
    dist = st.beta(a, b)
    assert ks_pvalue(v, dist) > 1e-3
    n = v.size
    mean, var, kurt = (float(m) for m in dist.stats(moments="mvk"))
    m4 = (kurt + 3) * var ** 2  # 4th central moment from the excess kurtosis
    # sd of the sample mean is sqrt(var / n); of the sample variance about sqrt((m4 - var^2) / n)
    assert abs(v.mean() - mean) < 5 * math.sqrt(var / n)
    assert abs(v.var() - var) < 5 * math.sqrt((m4 - var ** 2) / n)
    for q in (0.01, 0.99):  # where Beta(0.2, 0.2) puts ~21 % of its mass on each side
        assert tail_ok(v < q, dist.cdf(q)), (a, b, q, (v < q).mean(), dist.cdf(q))
    assert tail_ok(v >= 1 - 1e-6, dist.sf(1 - 1e-6))


# ---------------------------------------------------------------- the labels used as examples

def test_example_pairs_are_same_and_different_superclasses():
    assert SC[LABEL["orchid"]] == SC[LABEL["tulip"]]  # both flowers
    assert SC[LABEL["tulip"]] != SC[LABEL["trout"]]  # flowers / fish
    y = torch.tensor([LABEL["orchid"], LABEL["tulip"], LABEL["tulip"], LABEL["oak_tree"]])
    yp = torch.tensor([LABEL["tulip"], LABEL["trout"], LABEL["tulip"], LABEL["maple_tree"]])
    assert same_superclass(y, yp, SC).tolist() == [True, False, True, True]


# ---------------------------------------------------------------- none

@pytest.mark.parametrize("a,b", [("orchid", "tulip"), ("tulip", "trout")])
def test_none_gives_ones_and_leaves_images_alone(a, b):
    y, yp = pair(a, b, 50)
    lam = sample_ratios("none", y, yp, SC, gen(0))
    assert lam.shape == (50,) and torch.equal(lam, torch.ones(50))
    x = torch.randn(50, 3, 4, 4, generator=gen(1))
    xm, y_out, yp_out, lam = mix_batch(x, y, "none", SC, gen(2))
    assert torch.equal(xm, x) and torch.equal(y_out, y) and torch.equal(lam, torch.ones(50))


# ---------------------------------------------------------------- plain mixup

@pytest.mark.parametrize("a,b", [("orchid", "tulip"), ("tulip", "trout")])
def test_mixup_default_is_uniform_whatever_the_superclasses(a, b):
    y, yp = pair(a, b)
    lam = sample_ratios("mixup", y, yp, SC, gen(10)).double().numpy()
    assert st.kstest(lam, "uniform").pvalue > 1e-3
    assert abs(lam.mean() - 0.5) < 5 * math.sqrt(1 / 12 / N)
    assert abs(lam.var() - 1 / 12) < 5 * math.sqrt((1 / 80 - 1 / 144) / N)  # m4 of U(0,1) = 1/80


def test_mixup_default_moments_to_three_decimals():
    # 10x more draws: resolves a 2 % error in the Beta shape (variance off by ~0.0018)
    n = 200_000
    y, yp = pair("tulip", "trout", n)
    lam = sample_ratios("mixup", y, yp, SC, gen(12)).double().numpy()
    assert abs(lam.mean() - 0.5) < 5 * math.sqrt(1 / 12 / n)
    assert abs(lam.var() - 1 / 12) < 5 * math.sqrt((1 / 80 - 1 / 144) / n)


@pytest.mark.parametrize("alpha", [0.4, 2.0])
def test_mixup_other_alpha_follows_beta(alpha):
    y, yp = pair("tulip", "trout")
    check_beta(sample_ratios("mixup", y, yp, SC, gen(11), alpha=alpha), alpha, alpha)


# ---------------------------------------------------------------- superclass-choice

def test_choice_same_superclass_is_exactly_one_half():
    y, yp = pair("orchid", "tulip", 1000)
    lam = sample_ratios("superclass-choice", y, yp, SC, gen(20))
    assert lam.dtype == torch.float32 and torch.all(lam == 0.5)


def test_choice_different_superclass_is_0_9_or_0_1_with_equal_odds():
    y, yp = pair("tulip", "trout")
    lam = sample_ratios("superclass-choice", y, yp, SC, gen(21))
    high, low = lam == torch.tensor(0.9), lam == torch.tensor(0.1)
    assert torch.all(high | low)
    assert tail_ok(high.numpy(), 0.5)
    assert 0 < int(high.sum()) < N


def test_choice_custom_ratios_are_respected():
    y = torch.tensor([LABEL["orchid"], LABEL["tulip"]] * 2000)
    yp = torch.tensor([LABEL["tulip"], LABEL["trout"]] * 2000)
    lam = sample_ratios("superclass-choice", y, yp, SC, gen(22), same_ratio=0.3, diff_ratio=0.75)
    assert torch.all(lam[0::2] == torch.tensor(0.3))
    diff = lam[1::2]
    high = diff == torch.tensor(0.75)
    assert torch.all(high | (diff == torch.tensor(0.25)))
    assert tail_ok(high.numpy(), 0.5)


def test_choice_extreme_ratios_are_allowed():
    y = torch.tensor([LABEL["orchid"], LABEL["tulip"]] * 10)
    yp = torch.tensor([LABEL["tulip"], LABEL["trout"]] * 10)
    lam = sample_ratios("superclass-choice", y, yp, SC, gen(23), same_ratio=1.0, diff_ratio=1.0)
    assert torch.equal(lam[0::2], torch.ones(10))
    assert torch.all((lam[1::2] == 0) | (lam[1::2] == 1))  # diff_ratio or 1 - diff_ratio
    assert 0 < int((lam[1::2] == 0).sum()) < 10


# ---------------------------------------------------------------- superclass-beta

def test_beta_same_superclass_follows_beta_8_8():
    y, yp = pair("orchid", "tulip")
    lam = sample_ratios("superclass-beta", y, yp, SC, gen(30))
    check_beta(lam, 8.0, 8.0)
    v = lam.double().numpy()
    var = 1 / (4 * (2 * 8.0 + 1))  # Beta(a, a): variance 1 / (4 (2a + 1))
    assert abs(v.mean() - 0.5) < 5 * math.sqrt(var / N)
    assert abs(v.var() - var) < 0.1 * var


def test_beta_different_superclass_follows_beta_0_2_including_tails():
    y, yp = pair("tulip", "trout")
    lam = sample_ratios("superclass-beta", y, yp, SC, gen(31))
    check_beta(lam, 0.2, 0.2)
    v = lam.double().numpy()
    var = 1 / (4 * (2 * 0.2 + 1))
    assert abs(v.mean() - 0.5) < 5 * math.sqrt(var / N)
    for q in (1e-4, 1e-3, 0.01, 0.1):  # deep left tail; the right tail is its mirror image
        assert tail_ok(v < q, st.beta.cdf(q, 0.2, 0.2))
        assert tail_ok(v > 1 - q, st.beta.cdf(q, 0.2, 0.2))


def test_beta_custom_alphas_are_respected():
    y, yp = pair("tulip", "trout")
    check_beta(sample_ratios("superclass-beta", y, yp, SC, gen(32), same_alpha=3.0, diff_alpha=0.5),
               0.5, 0.5)


def test_beta_mixed_batch_gives_each_sample_its_own_law():
    # alternate same (orchid/tulip) and different (tulip/trout) pairs, then split the draws
    y = torch.tensor([LABEL["orchid"], LABEL["tulip"]] * N)
    yp = torch.tensor([LABEL["tulip"], LABEL["trout"]] * N)
    lam = sample_ratios("superclass-beta", y, yp, SC, gen(33))
    check_beta(lam[0::2].contiguous(), 8.0, 8.0)
    check_beta(lam[1::2].contiguous(), 0.2, 0.2)


# ---------------------------------------------------------------- superclass-soft

def _soft_beta_alpha():
    wordnet = pytest.importorskip("sdml.hierarchy.wordnet", reason="sdml.hierarchy.wordnet is not written yet")
    if not hasattr(wordnet, "soft_beta_alpha"):
        pytest.skip("sdml.hierarchy.wordnet.soft_beta_alpha is not written yet")
    return wordnet.soft_beta_alpha


def test_soft_follows_beta_of_the_similarity():
    soft_beta_alpha = _soft_beta_alpha()
    sim = torch.zeros(100, 100, dtype=torch.float64)
    o, t, tr = LABEL["orchid"], LABEL["tulip"], LABEL["trout"]
    sim[o, t] = 1.0  # identical meaning -> the "same" law
    sim[t, tr] = 0.0  # unrelated -> the "different" law
    sim[o, tr] = 0.5
    y = torch.tensor([o, t, o] * N)
    yp = torch.tensor([t, tr, tr] * N)
    lam = sample_ratios("superclass-soft", y, yp, SC, gen(40), similarity=sim)
    check_beta(lam[0::3].contiguous(), 8.0, 8.0)
    check_beta(lam[1::3].contiguous(), 0.2, 0.2)
    a_mid = float(soft_beta_alpha(torch.tensor([0.5], dtype=torch.float64), same_alpha=8.0,
                                  diff_alpha=0.2)[0])
    assert a_mid == pytest.approx(math.sqrt(8.0 * 0.2))  # log-scale midpoint of 0.2 and 8
    check_beta(lam[2::3].contiguous(), a_mid, a_mid)


# ---------------------------------------------------------------- the Beta sampler itself

@pytest.mark.parametrize("a,b", [(2.0, 5.0), (0.3, 3.0), (5.0, 0.7), (1.0, 1.0), (0.05, 0.05)])
def test_sample_beta_asymmetric_and_extreme_laws(a, b):
    x = sample_beta(torch.full((N,), a), torch.full((N,), b), gen(50))
    assert x.shape == (N,)
    check_beta(x, a, b)


def test_sample_beta_broadcasts_and_keeps_shape():
    a = torch.tensor([[0.5], [4.0]])  # (2, 1)
    b = torch.tensor([1.0, 2.0, 3.0])  # (3,)
    assert sample_beta(a, b, gen(51)).shape == (2, 3)


def test_sample_beta_per_element_parameters():
    # one call, two laws interleaved: each element must use its own (a, b)
    a = torch.tensor([2.0, 0.3] * N)
    b = torch.tensor([5.0, 3.0] * N)
    x = sample_beta(a, b, gen(52))
    check_beta(x[0::2].contiguous(), 2.0, 5.0)
    check_beta(x[1::2].contiguous(), 0.3, 3.0)


# ---------------------------------------------------------------- randomness

RANDOM_METHODS = ("mixup", "superclass-choice", "superclass-beta")


@pytest.mark.parametrize("method", RANDOM_METHODS)
def test_same_seed_same_draws_other_seed_other_draws(method):
    y = torch.arange(100)
    x = torch.randn(100, 2, generator=gen(60))
    a = mix_batch(x, y, method, SC, gen(7))
    b = mix_batch(x, y, method, SC, gen(7))
    c = mix_batch(x, y, method, SC, gen(8))
    for u, v in zip(a, b):
        assert torch.equal(u, v)
    assert not torch.equal(a[2], c[2])  # another permutation
    assert not torch.equal(a[3], c[3])  # other ratios
    assert torch.equal(partners(100, gen(3)), partners(100, gen(3)))
    assert not torch.equal(partners(100, gen(3)), partners(100, gen(4)))


@pytest.mark.parametrize("method", METHODS[:4])
def test_no_global_random_state_is_used(method):
    y = torch.arange(100)
    x = torch.randn(100, 2, generator=gen(61))
    torch.manual_seed(1234)
    expected = torch.rand(8)
    torch.manual_seed(1234)
    mix_batch(x, y, method, SC, gen(9))
    sample_ratios(method, y, y.flip(0), SC, gen(9))
    sample_beta(torch.full((50,), 0.2), torch.full((50,), 0.2), gen(9))
    partners(100, gen(9))
    assert torch.equal(torch.rand(8), expected)


# ---------------------------------------------------------------- mixing a batch

@pytest.mark.parametrize("method", RANDOM_METHODS)
def test_mix_batch_is_the_convex_combination_with_the_partner(method):
    b = 100
    y = torch.randperm(b, generator=gen(70))  # distinct labels, so the permutation can be read back
    x = torch.randn(b, 3, 5, 5, generator=gen(71))
    xm, y_out, yp, lam = mix_batch(x, y, method, SC, gen(72))
    assert xm.shape == x.shape and xm.dtype == x.dtype
    assert y_out.shape == yp.shape == lam.shape == (b,)
    assert torch.equal(y_out, y)
    pos = {int(label): i for i, label in enumerate(y)}
    perm = [pos[int(label)] for label in yp]  # sample i was mixed with sample perm[i]
    assert sorted(perm) == list(range(b))  # a permutation of the batch
    x64, lam64 = x.double(), lam.double()
    for i in range(b):
        want = lam64[i] * x64[i] + (1 - lam64[i]) * x64[perm[i]]
        assert torch.allclose(xm[i].double(), want, atol=1e-6)
    assert not torch.equal(xm, x)


def test_mix_images_weights_by_lam():
    x = torch.tensor([[1.0, 2.0], [10.0, 20.0], [100.0, 200.0]])
    perm = torch.tensor([2, 0, 1])
    lam = torch.tensor([1.0, 0.25, 0.5])
    want = torch.tensor([[1.0, 2.0], [0.25 * 10 + 0.75 * 1, 0.25 * 20 + 0.75 * 2], [55.0, 110.0]])
    assert torch.allclose(mix_images(x, perm, lam), want)


def test_mixed_target_rows():
    c = 10
    y = torch.tensor([0, 3, 5, 7, 9])
    yp = torch.tensor([1, 3, 2, 8, 0])
    lam = torch.tensor([0.9, 0.3, 0.5, 0.0, 1.0])
    t = mixed_target(y, yp, lam, c)
    assert t.shape == (5, c)
    assert torch.allclose(t.sum(1), torch.ones(5))
    for i in range(5):
        want = torch.zeros(c)
        want[y[i]] += lam[i]
        want[yp[i]] += 1 - lam[i]
        assert torch.allclose(t[i], want)
    assert t[1, 3] == pytest.approx(1.0)  # same class on both sides: the full weight


def test_share_of_same_superclass_partners_is_five_percent():
    # A random permutation partner is uniform over the whole batch (itself included), so for a
    # balanced batch (m images of each of the 100 classes) P(same superclass) = 5 m / 100 m = 5 %.
    m, batches = 2, 200
    b = 100 * m
    y_balanced = torch.arange(100).repeat(m)
    sc = SC.tolist()
    exact = sum(sc[i] == sc[j] for i in y_balanced.tolist() for j in y_balanced.tolist()) / b ** 2
    assert exact == pytest.approx(0.05)
    g = gen(80)
    x = torch.zeros(b, 1)
    same, halves = 0, 0
    for _ in range(batches):
        y = y_balanced[torch.randperm(b, generator=g)]
        _, _, yp, lam = mix_batch(x, y, "superclass-choice", SC, g)
        same += sum(sc[u] == sc[v] for u, v in zip(y.tolist(), yp.tolist()))
        halves += int((lam == 0.5).sum())
    assert halves == same  # superclass-choice gives 0.5 exactly on those pairs
    n = b * batches
    assert abs(same / n - exact) < 5 * math.sqrt(exact * (1 - exact) / n)


# ---------------------------------------------------------------- bad input

def _ys():
    return torch.tensor([1, 2]), torch.tensor([2, 1])


@pytest.mark.parametrize("method,params,field", [
    ("cutmix", {}, "method"),
    ("mixup", {"beta": 1.0}, "beta"),
    ("mixup", {"same_alpha": 1.0}, "same_alpha"),
    ("none", {"alpha": 1.0}, "alpha"),
    ("superclass-beta", {"alpha": 1.0}, "alpha"),
    ("superclass-choice", {"same_alpha": 8.0}, "same_alpha"),
    ("mixup", {"alpha": 0.0}, "alpha"),
    ("mixup", {"alpha": -1.0}, "alpha"),
    ("mixup", {"alpha": float("nan")}, "alpha"),
    ("superclass-beta", {"same_alpha": 0.0}, "same_alpha"),
    ("superclass-beta", {"diff_alpha": -0.2}, "diff_alpha"),
    ("superclass-choice", {"same_ratio": 1.5}, "same_ratio"),
    ("superclass-choice", {"same_ratio": -0.1}, "same_ratio"),
    ("superclass-choice", {"diff_ratio": 1.01}, "diff_ratio"),
    ("superclass-choice", {"diff_ratio": float("nan")}, "diff_ratio"),
    ("superclass-soft", {}, "similarity"),
    ("superclass-soft", {"same_alpha": -1.0, "similarity": torch.eye(100)}, "same_alpha"),
])
def test_bad_input_raises_value_error_naming_the_field(method, params, field):
    y, yp = _ys()
    with pytest.raises(ValueError, match=f"^{field}:"):
        sample_ratios(method, y, yp, SC, gen(0), **params)
    with pytest.raises(ValueError, match=f"^{field}:"):
        resolve_params(method, params)
    with pytest.raises(ValueError, match=f"^{field}:"):
        mix_batch(torch.zeros(2, 3), y, method, SC, gen(0), **params)


def test_bad_value_is_quoted_in_the_message():
    y, yp = _ys()
    with pytest.raises(ValueError, match="'cutmix'"):
        sample_ratios("cutmix", y, yp, SC)
    with pytest.raises(ValueError, match="-0.5"):
        sample_ratios("mixup", y, yp, SC, alpha=-0.5)
    with pytest.raises(ValueError, match="1.5"):
        sample_ratios("superclass-choice", y, yp, SC, same_ratio=1.5)


def test_resolve_params_fills_the_paper_defaults():
    assert resolve_params("mixup", {}) == {"alpha": 1.0}
    assert resolve_params("superclass-choice", {}) == {"same_ratio": 0.5, "diff_ratio": 0.9}
    assert resolve_params("superclass-beta", {}) == {"same_alpha": 8.0, "diff_alpha": 0.2}
    assert resolve_params("superclass-beta", {"diff_alpha": 0.4}) == {"same_alpha": 8.0, "diff_alpha": 0.4}
    assert set(DEFAULTS) == set(METHODS)
