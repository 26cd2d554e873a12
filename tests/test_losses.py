"""The DML loss on mixed samples, against a float64 reference written with explicit loops.

Reference (module docstring; Zhang et al., CVPR 2018, with mixup targets)::

    L_k = 1/B sum_b [lam_b CE(z_kb, y_b) + (1 - lam_b) CE(z_kb, y'_b)]
        + T^2 / (K - 1) sum_{j != k} 1/B sum_b KL(p_jb || p_kb),     p = softmax(z / T)

and its gradient with respect to peer k's own logits (the peers j != k are constants)::

    dL_k / dz_kb = 1/B (softmax(z_kb) - t_b) + T / (K - 1) 1/B sum_{j != k} (p_kb - p_jb)

with t_b = lam_b onehot(y_b) + (1 - lam_b) onehot(y'_b).
"""
import math

import pytest
import torch
import torch.nn.functional as F

from sdml.method.losses import dml_losses, mixed_cross_entropy, mutual_kl


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def problem(k: int, b: int = 6, c: int = 5, seed: int = 0, scale: float = 2.0):
    g = gen(seed)
    logits = scale * torch.randn(k, b, c, generator=g)  # (K, B, C)
    y = torch.randint(c, (b,), generator=g)
    y_partner = torch.randint(c, (b,), generator=g)
    y_partner[0] = y[0]  # one pair of the same class, as mixup sometimes draws
    lam = torch.rand(b, generator=g)
    return logits, y, y_partner, lam


def softmax_row(row, t: float = 1.0):
    m = max(row)
    e = [math.exp((v - m) / t) for v in row]
    s = sum(e)
    return [v / s for v in e]


def ref_losses(logits, y, y_partner, lam, t: float = 1.0, reverse_kl: bool = False):
    """(K,) list: the formula above with Python loops, in float64 (``reverse_kl``: KL(p_k || p_j))."""
    z = logits.double().tolist()
    y, y_partner, lam = y.tolist(), y_partner.tolist(), lam.double().tolist()
    k_peers, b, c = len(z), len(z[0]), len(z[0][0])
    out = []
    for k in range(k_peers):
        ce = 0.0
        for i in range(b):
            p = softmax_row(z[k][i])
            ce += -lam[i] * math.log(p[y[i]]) - (1 - lam[i]) * math.log(p[y_partner[i]])
        kl = 0.0
        for j in range(k_peers):
            if j == k:
                continue
            for i in range(b):
                pj, pk = softmax_row(z[j][i], t), softmax_row(z[k][i], t)
                if reverse_kl:
                    pj, pk = pk, pj
                kl += sum(pj[m] * (math.log(pj[m]) - math.log(pk[m])) for m in range(c))
        out.append(ce / b + t * t / (k_peers - 1) * kl / b)
    return out


def ref_grad(logits, y, y_partner, lam, k: int, t: float = 1.0) -> torch.Tensor:
    """(B, C) float64: dL_k / dz_k from the closed form above."""
    z = logits.double().tolist()
    y, y_partner, lam = y.tolist(), y_partner.tolist(), lam.double().tolist()
    k_peers, b, c = len(z), len(z[0]), len(z[0][0])
    grad = torch.zeros(b, c, dtype=torch.float64)
    for i in range(b):
        p1 = softmax_row(z[k][i])
        pt = softmax_row(z[k][i], t)
        for m in range(c):
            target = lam[i] * (m == y[i]) + (1 - lam[i]) * (m == y_partner[i])
            g = p1[m] - target
            for j in range(k_peers):
                if j != k:
                    g += t / (k_peers - 1) * (pt[m] - softmax_row(z[j][i], t)[m])
            grad[i, m] = g / b
    return grad


# ---------------------------------------------------------------- values

@pytest.mark.parametrize("k", [2, 3])
@pytest.mark.parametrize("t", [1.0, 2.0])
def test_dml_losses_match_the_loop_reference(k, t):
    logits, y, y_partner, lam = problem(k, seed=10 * k + int(t))
    got = dml_losses(logits, y, y_partner, lam, t)
    assert got.shape == (k,) and got.dtype == torch.float32
    want = torch.tensor(ref_losses(logits, y, y_partner, lam, t), dtype=torch.float64)
    assert torch.allclose(got.double(), want, rtol=1e-5, atol=1e-6)
    # the check can tell KL(p_j || p_k) from KL(p_k || p_j): the reversed reference is far off
    reverse = torch.tensor(ref_losses(logits, y, y_partner, lam, t, reverse_kl=True), dtype=torch.float64)
    assert (got.double() - reverse).abs().max() > 1e-2


def test_mutual_kl_known_values():
    # p_0 = (1/2, 1/2), p_1 = (3/4, 1/4)
    logits = torch.tensor([[[0.0, 0.0]], [[math.log(3.0), 0.0]]])  # (K=2, B=1, C=2)
    kl = mutual_kl(logits)
    kl_10 = 0.75 * math.log(0.75 / 0.5) + 0.25 * math.log(0.25 / 0.5)  # KL(p_1 || p_0): loss of peer 0
    kl_01 = 0.5 * math.log(0.5 / 0.75) + 0.5 * math.log(0.5 / 0.25)  # KL(p_0 || p_1): loss of peer 1
    assert kl.tolist() == pytest.approx([kl_10, kl_01], rel=1e-5)
    # T = 2: the peers' distributions at T, times T^2
    kl2 = mutual_kl(logits, temperature=2.0)
    q1 = softmax_row([math.log(3.0), 0.0], 2.0)
    want0 = 4 * sum(q * math.log(q / 0.5) for q in q1)
    want1 = 4 * sum(0.5 * math.log(0.5 / q) for q in q1)
    assert kl2.tolist() == pytest.approx([want0, want1], rel=1e-5)


def test_mutual_kl_is_non_negative():
    logits, *_ = problem(3, b=16, c=10, seed=3, scale=5.0)
    assert torch.all(mutual_kl(logits) >= 0)


@pytest.mark.parametrize("k", [2, 3])
@pytest.mark.parametrize("t", [1.0, 2.0])
def test_identical_peers_have_zero_kl(k, t):
    logits, y, y_partner, lam = problem(1, seed=20)
    same = logits.expand(k, -1, -1).clone()  # (K, B, C): every peer predicts the same
    assert torch.allclose(mutual_kl(same, t), torch.zeros(k), atol=1e-6)
    ce = mixed_cross_entropy(same, y, y_partner, lam)
    assert torch.allclose(dml_losses(same, y, y_partner, lam, t), ce, atol=1e-6)


def test_lam_one_is_plain_cross_entropy_and_lam_zero_the_partner_s():
    logits, y, y_partner, _ = problem(3, b=8, c=7, seed=30)
    ones, zeros = torch.ones(8), torch.zeros(8)
    ce = mixed_cross_entropy(logits, y, y_partner, ones)
    ce_partner = mixed_cross_entropy(logits, y, y_partner, zeros)
    for k in range(3):
        assert ce[k].item() == pytest.approx(F.cross_entropy(logits[k], y).item(), rel=1e-6)
        assert ce_partner[k].item() == pytest.approx(F.cross_entropy(logits[k], y_partner).item(), rel=1e-6)
    kl = mutual_kl(logits)
    assert torch.allclose(dml_losses(logits, y, y_partner, ones), ce + kl)


def test_mixed_cross_entropy_is_linear_in_lam():
    logits, y, y_partner, lam = problem(2, seed=31)
    ce_y = mixed_cross_entropy(logits, y, y_partner, torch.ones(6))
    ce_p = mixed_cross_entropy(logits, y, y_partner, torch.zeros(6))
    half = mixed_cross_entropy(logits, y, y_partner, torch.full((6,), 0.5))
    assert torch.allclose(half, (ce_y + ce_p) / 2, atol=1e-6)
    soft = torch.zeros(6, 5)
    soft[torch.arange(6), y] += lam
    soft[torch.arange(6), y_partner] += 1 - lam
    for k in range(2):  # cross_entropy with probability targets is another independent form
        assert mixed_cross_entropy(logits, y, y_partner, lam)[k].item() == pytest.approx(
            F.cross_entropy(logits[k], soft).item(), rel=1e-6)


def test_temperature_does_not_touch_the_cross_entropy():
    logits, y, y_partner, lam = problem(2, seed=32)
    d1 = dml_losses(logits, y, y_partner, lam, 1.0) - mutual_kl(logits, 1.0)
    d3 = dml_losses(logits, y, y_partner, lam, 3.0) - mutual_kl(logits, 3.0)
    assert torch.allclose(d1, d3, atol=1e-6)


# ---------------------------------------------------------------- gradients

@pytest.mark.parametrize("k_peers", [2, 3])
@pytest.mark.parametrize("t", [1.0, 2.0])
def test_each_loss_sends_gradient_into_its_own_peer_only(k_peers, t):
    logits, y, y_partner, lam = problem(k_peers, seed=40 + k_peers)
    for k in range(k_peers):
        z = logits.clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(dml_losses(z, y, y_partner, lam, t)[k], z)
        for j in range(k_peers):
            if j != k:
                assert torch.count_nonzero(grad[j]) == 0  # the teachers are detached: exactly zero
        assert torch.allclose(grad[k].double(), ref_grad(logits, y, y_partner, lam, k, t), atol=1e-6)


def test_gradient_of_the_summed_losses_is_the_per_peer_gradients():
    logits, y, y_partner, lam = problem(3, seed=50)
    z = logits.clone().requires_grad_(True)
    dml_losses(z, y, y_partner, lam, 2.0).sum().backward()
    want = torch.stack([ref_grad(logits, y, y_partner, lam, k, 2.0) for k in range(3)])
    assert torch.allclose(z.grad.double(), want, atol=1e-6)


def test_autograd_matches_finite_differences_of_the_reference():
    # the closed-form gradient used above, checked once against central differences of the
    # independent loop reference (float64), so neither side relies on autograd
    logits, y, y_partner, lam = problem(2, b=3, c=4, seed=60)
    z = logits.double()
    k, eps = 1, 1e-6
    want = ref_grad(logits, y, y_partner, lam, k, 2.0)
    for i in range(3):
        for m in range(4):
            up, down = z.clone(), z.clone()
            up[k, i, m] += eps
            down[k, i, m] -= eps
            fd = (ref_losses(up, y, y_partner, lam, 2.0)[k]
                  - ref_losses(down, y, y_partner, lam, 2.0)[k]) / (2 * eps)
            assert fd == pytest.approx(want[i, m].item(), abs=1e-7)


# ---------------------------------------------------------------- bad input

def test_one_peer_is_rejected():
    logits, y, y_partner, lam = problem(1)
    with pytest.raises(ValueError, match="^peers: 1"):
        dml_losses(logits, y, y_partner, lam)
    with pytest.raises(ValueError, match="^peers: 1"):
        mutual_kl(logits)


@pytest.mark.parametrize("shape", [(6, 5), (2, 6, 5, 1), (5,)])
def test_logits_must_be_3d(shape):
    _, y, y_partner, lam = problem(2)
    with pytest.raises(ValueError, match=r"^logits: shape \("):
        dml_losses(torch.zeros(shape), y, y_partner, lam)


@pytest.mark.parametrize("t", [0.0, -1.0, float("nan")])
def test_non_positive_temperature_is_rejected(t):
    logits, y, y_partner, lam = problem(2)
    with pytest.raises(ValueError, match="^temperature:"):
        dml_losses(logits, y, y_partner, lam, t)


@pytest.mark.parametrize("field", ["y", "y_partner", "lam"])
def test_labels_and_ratios_must_have_one_entry_per_sample(field):
    # logits for B = 6 samples, but one of y, y_partner, lam has 4 entries
    logits, y, y_partner, lam = problem(2)
    args = {"y": y, "y_partner": y_partner, "lam": lam}
    args[field] = args[field][:4]
    with pytest.raises(ValueError, match=f"^{field}:"):
        dml_losses(logits, **args)


def test_labels_for_fewer_samples_than_logits_are_rejected():
    # all of y, y_partner, lam for 4 samples, logits for 6: must not quietly use the first 4
    logits, y, y_partner, lam = problem(2)
    with pytest.raises(ValueError, match="^y:"):
        dml_losses(logits, y[:4], y_partner[:4], lam[:4])
