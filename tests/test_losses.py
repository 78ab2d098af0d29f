"""Tests for mumic_core.model.losses against hand-worked values."""

import pytest
import torch
import torch.nn.functional as F

from mumic_core.model.losses import (
    LOSS_NAMES,
    asl,
    bce,
    hardness_aware_bce,
    init_temperature_offset,
    loss_fn,
    softmax_ce,
    tempered_logits,
)

TOL = 1e-4


def _value_and_grad(fn, logits, *args, **kwargs):
    x = torch.tensor(logits, dtype=torch.float64, requires_grad=True)
    loss = fn(x, *args, **kwargs)
    loss.backward()
    return loss.item(), x.grad


def test_tempered_logits_broadcasts_per_class_offset():
    s = torch.tensor([[0.3, 0.1], [0.2, -0.1]])
    out = tempered_logits(s, 0.1, torch.tensor([0.1, 0.0]))
    assert torch.allclose(out, torch.tensor([[2.0, 1.0], [1.0, -1.0]]))


def test_mumic_value_and_grad_by_hand():
    # logits x = [0.5, -1.0], targets [1, 0], gamma_pos=1, gamma_neg=2, margin=0.05.
    # Positive: p = sigmoid(0.5) = 0.622459, 1-p = 0.377541, log p = -0.474077
    #   L0 = -(1-p) log p = 0.178983
    #   dL0/dx = (1-p) * (p log p - (1-p)) = 0.377541 * (-0.295094 - 0.377541) = -0.253947
    # Negative: p = sigmoid(-1) = 0.268941, p_m = 0.218941, log(1-p_m) = -0.247105
    #   L1 = -p_m^2 log(1-p_m) = 0.047935 * 0.247105 = 0.011845
    #   dL1/dp_m = -2 p_m log(1-p_m) + p_m^2/(1-p_m) = 0.108203 + 0.061372 = 0.169575
    #   dL1/dx = dL1/dp_m * p(1-p) = 0.169575 * 0.196612 = 0.033341
    # Mean over 2 entries: L = 0.095414, grad = [-0.126973, 0.016670]
    loss, grad = _value_and_grad(hardness_aware_bce, [[0.5, -1.0]], torch.tensor([[1.0, 0.0]]))
    assert loss == pytest.approx(0.095414, abs=TOL)
    assert grad[0, 0].item() == pytest.approx(-0.126973, abs=TOL)
    assert grad[0, 1].item() == pytest.approx(0.016670, abs=TOL)


def test_mask_excludes_entries():
    x = [[0.5, -1.0, 2.0], [0.3, 0.7, -0.2]]
    mask = torch.tensor([[1.0, 1.0, 0.0], [0.0, 0.0, 0.0]])
    t1 = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    t2 = torch.tensor([[1.0, 0.0, 1.0], [1.0, 0.0, 1.0]])
    for fn in (hardness_aware_bce, bce, asl, softmax_ce):
        l1, g1 = _value_and_grad(fn, x, t1, mask)
        l2, g2 = _value_and_grad(fn, x, t2, mask)
        assert l1 == pytest.approx(l2, abs=1e-12)
        assert torch.allclose(g1, g2)
        assert torch.all(g1[mask == 0] == 0)
    # Unmasked entries are the 1x2 hand-worked case, averaged over 2 entries (not 6).
    loss, _ = _value_and_grad(hardness_aware_bce, x, t1, mask)
    assert loss == pytest.approx(0.095414, abs=TOL)


def test_margin_negative_contributes_exactly_zero():
    # sigmoid(-4) = 0.017986 <= 0.05, so p_m = 0: zero loss and zero gradient.
    loss, grad = _value_and_grad(hardness_aware_bce, [[-4.0]], torch.tensor([[0.0]]))
    assert loss == 0.0
    assert grad.item() == 0.0


def test_bce_by_hand_and_matches_torch():
    # x = [0.5, -1], t = [1, 0]: (-log sigmoid(0.5) - log(1 - sigmoid(-1))) / 2
    #   = (0.474077 + 0.313262) / 2 = 0.393669; grad = (p - t)/2 = [-0.188770, 0.134471]
    loss, grad = _value_and_grad(bce, [[0.5, -1.0]], torch.tensor([[1.0, 0.0]]))
    assert loss == pytest.approx(0.393669, abs=TOL)
    assert grad[0].tolist() == pytest.approx([-0.188770, 0.134471], abs=TOL)

    gen = torch.Generator().manual_seed(0)
    x = torch.randn(5, 7, generator=gen, dtype=torch.float64) * 3
    t = (torch.rand(5, 7, generator=gen) > 0.7).double()
    assert bce(x, t).item() == pytest.approx(F.binary_cross_entropy(torch.sigmoid(x), t).item(), abs=1e-8)
    assert hardness_aware_bce(x, t, gamma_pos=0, gamma_neg=0, neg_margin=0).item() == pytest.approx(
        bce(x, t).item(), abs=1e-8
    )


def test_asl_is_hardness_aware_bce_with_its_params():
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(4, 6, generator=gen, dtype=torch.float64)
    t = (torch.rand(4, 6, generator=gen) > 0.5).double()
    expected = hardness_aware_bce(x, t, gamma_pos=0.0, gamma_neg=4.0, neg_margin=0.05)
    assert asl(x, t).item() == pytest.approx(expected.item(), abs=1e-12)


def test_stable_for_extreme_logits():
    x = torch.tensor([[100.0, -100.0, 100.0, -100.0]], requires_grad=True)
    t = torch.tensor([[1.0, 0.0, 0.0, 1.0]])
    for fn in (hardness_aware_bce, bce, asl, softmax_ce):
        loss = fn(x, t)
        loss.backward()
        assert torch.isfinite(loss) and torch.all(torch.isfinite(x.grad))
        x.grad = None


def test_softmax_ce_by_hand():
    # Row 0: x = [1, 2, 0], positives {0, 1} -> target [0.5, 0.5, 0].
    #   logsumexp = log(e + e^2 + 1) = log(11.107338) = 2.407606
    #   loss = 0.5 * ((2.407606 - 1) + (2.407606 - 2)) = 0.907606
    #   grad = softmax - target = [0.244728, 0.665241, 0.090031] - [0.5, 0.5, 0]
    # Row 1 has no positive: skipped (zero gradient); mean over 1 row.
    t = torch.tensor([[1.0, 1.0, 0.0], [0.0, 0.0, 0.0]])
    loss, grad = _value_and_grad(softmax_ce, [[1.0, 2.0, 0.0], [0.0, 0.0, 0.0]], t)
    assert loss == pytest.approx(0.907606, abs=TOL)
    assert grad[0].tolist() == pytest.approx([-0.255272, 0.165241, 0.090031], abs=TOL)
    assert grad[1].tolist() == [0.0, 0.0, 0.0]

    # Masking class 2 removes it from the softmax: logsumexp(1, 2) = 2.313262,
    #   loss = 0.5 * (1.313262 + 0.313262) = 0.813262, grad = [0.268941-0.5, 0.731059-0.5, 0]
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 1.0]])
    loss, grad = _value_and_grad(softmax_ce, [[1.0, 2.0, 0.0], [0.0, 0.0, 0.0]], t, mask)
    assert loss == pytest.approx(0.813262, abs=TOL)
    assert grad[0].tolist() == pytest.approx([-0.231059, 0.231059, 0.0], abs=TOL)


def test_softmax_ce_no_positive_rows_returns_zero_with_grad():
    x = torch.randn(2, 3, requires_grad=True)
    loss = softmax_ce(x, torch.zeros(2, 3))
    assert loss.item() == 0.0 and loss.requires_grad
    loss.backward()
    assert torch.all(x.grad == 0)


def test_loss_fn_names_params_and_errors():
    x = torch.tensor([[0.5, -1.0]], dtype=torch.float64)
    t = torch.tensor([[1.0, 0.0]], dtype=torch.float64)
    for name in LOSS_NAMES:
        assert torch.isfinite(loss_fn(name)(x, t, None))
    custom = loss_fn("mumic", gamma_pos=0.0, gamma_neg=0.0, neg_margin=0.0)
    assert custom(x, t).item() == pytest.approx(0.393669, abs=TOL)
    with pytest.raises(ValueError, match="unknown loss"):
        loss_fn("focal")
    with pytest.raises(ValueError, match="unknown parameters"):
        loss_fn("bce", gamma_neg=2.0)


def test_init_temperature_offset_is_not_saturating():
    gen = torch.Generator().manual_seed(0)
    sims = 0.2 + 0.05 * torch.randn(256, 40, generator=gen)
    tau, b = init_temperature_offset(sims, positive_rate=0.1)
    assert isinstance(b, float) and tau == pytest.approx(0.05, rel=0.1)
    p = torch.sigmoid(tempered_logits(sims, tau, b))
    assert 0.01 < p.mean().item() < 0.5
    assert (sims > b).float().mean().item() == pytest.approx(0.1, abs=0.01)

    tau_c, b_c = init_temperature_offset(sims, positive_rate=0.1, per_class=True)
    assert isinstance(b_c, torch.Tensor) and b_c.shape == (40,)
    p_c = torch.sigmoid(tempered_logits(sims, tau_c, b_c))
    assert 0.01 < p_c.mean().item() < 0.5
