"""Tests for mumic_core.model.losses against hand-worked values: each loss module on logits
(``on_logits``), its own temperature and offset, and the factory."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mumic_core.model.head import calibrate, tempered_logits
from mumic_core.model.losses import LOSS_NAMES, ASLLoss, BCELoss, LossConfig, MuMICLoss, SoftmaxLoss, create_loss

TOL = 1e-4


def _on_logits(cls, **params):
    """The loss ``cls`` as a function of logits, targets and mask (its calibration unused)."""
    module = cls(1, 1.0, 0.0, per_class_offset=False, **params)
    return lambda logits, targets, mask=None: module.on_logits(logits, targets, mask)


hardness_aware_bce = _on_logits(MuMICLoss, margin=0.05)  # the paper's margin, as the hand values use
bce, asl, softmax_ce = _on_logits(BCELoss), _on_logits(ASLLoss), _on_logits(SoftmaxLoss)


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
    plain = _on_logits(MuMICLoss, gamma_pos=0, gamma_neg=0, margin=0)
    assert plain(x, t).item() == pytest.approx(bce(x, t).item(), abs=1e-8)


def test_asl_has_its_own_defaults_and_keeps_focusing_weights_out_of_the_gradient():
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(4, 6, generator=gen, dtype=torch.float64)
    t = (torch.rand(4, 6, generator=gen) > 0.5).double()
    same_value = _on_logits(MuMICLoss, gamma_pos=0.0, gamma_neg=4.0, margin=0.05)
    assert asl(x, t).item() == pytest.approx(same_value(x, t).item(), abs=1e-12)  # the value is the same
    a, b = x.clone().requires_grad_(), x.clone().requires_grad_()
    asl(a, t).backward()
    same_value(b, t).backward()
    assert not torch.allclose(a.grad, b.grad)  # the gradient is not: ASL detaches its weights


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


def test_create_loss_names_params_and_errors():
    sims = torch.tensor([[0.5, -1.0]], dtype=torch.float32)
    targets = torch.tensor([[1.0, 0.0]])
    for name in LOSS_NAMES:
        loss = create_loss(LossConfig(name), 2, 1.0, np.zeros(2, dtype=np.float32))
        assert torch.isfinite(loss(sims, targets))
    custom = create_loss(LossConfig("mumic", {"gamma_pos": 0.0, "gamma_neg": 0.0}), 2, 1.0, 0.0)
    assert custom(sims, targets).item() == pytest.approx(0.393669, abs=TOL)
    with pytest.raises(ValueError, match="unknown loss"):
        create_loss(LossConfig("focal"), 2, 1.0, 0.0)
    with pytest.raises(ValueError, match="has no parameter gamma_neg"):
        create_loss(LossConfig("bce", {"gamma_neg": 2.0}), 2, 1.0, 0.0)


def test_a_loss_owns_its_temperature_and_offset_and_hands_them_to_the_head():
    loss = create_loss(LossConfig("mumic"), 2, temperature=0.1, offset=np.array([0.1, 0.0], dtype=np.float32))
    assert {n for n, p in loss.named_parameters() if p.requires_grad} == {"log_temperature", "offset"}
    sims = torch.tensor([[0.3, 0.1], [0.2, -0.1]])
    assert torch.allclose(loss.logits(sims), torch.tensor([[2.0, 1.0], [1.0, -1.0]]))
    head = loss.head(["a", "b"])
    assert head.temperature == pytest.approx(0.1) and head.offsets == pytest.approx({"a": 0.1, "b": 0.0})
    assert np.allclose(head.probabilities(sims.numpy(), ["a", "b"]), torch.sigmoid(loss.logits(sims)).detach().numpy())
    frozen = create_loss(LossConfig("bce", per_class_offset=False, learn_temperature=False), 2, 0.1, 0.05)
    assert [n for n, p in frozen.named_parameters() if p.requires_grad] == ["offset"] and frozen.offset.dim() == 0


def test_calibration_is_not_saturating():
    gen = np.random.default_rng(0)
    sims = 0.2 + 0.05 * gen.standard_normal((256, 40))
    tau, b = calibrate(sims, positive_rate=0.1)
    assert isinstance(b, float) and tau == pytest.approx(0.05, rel=0.1)
    p = 1 / (1 + np.exp(-tempered_logits(sims, tau, b)))
    assert 0.01 < p.mean() < 0.5
    assert (sims > b).mean() == pytest.approx(0.1, abs=0.01)

    tau_c, b_c = calibrate(sims, positive_rate=0.1, per_class=True)
    assert isinstance(b_c, np.ndarray) and b_c.shape == (40,)
    p_c = 1 / (1 + np.exp(-tempered_logits(sims, tau_c, b_c)))
    assert 0.01 < p_c.mean() < 0.5


def test_a_per_pair_loss_summed_over_row_slices_equals_it_whole():
    """pair_sum over slices of rows adds up to the masked mean times the counted pairs (value and
    gradient), for every loss that is per pair; EPR and softmax, with a term per row or class, are not."""
    torch.manual_seed(0)
    logits = torch.randn(50, 6, requires_grad=True)
    targets = (torch.rand(50, 6) < 0.3).float()
    mask = (torch.rand(50, 6) < 0.8).float()
    assumed = ((targets == 0) & (torch.rand(50, 6) < 0.5)).float()
    for name in LOSS_NAMES:
        loss = create_loss(LossConfig(name), 6, 0.1, 0.2)
        if name in ("epr", "softmax"):
            assert not loss.per_pair
            continue
        assert loss.per_pair, name
        whole = loss.on_logits(logits, targets, mask, assumed) * mask.sum()
        (g_whole,) = torch.autograd.grad(whole, logits)
        parts = sum(
            loss.pair_sum(logits[a : a + 7], targets[a : a + 7], mask[a : a + 7], assumed[a : a + 7])
            for a in range(0, 50, 7)
        )
        (g_parts,) = torch.autograd.grad(parts, logits)
        assert torch.allclose(parts, whole, rtol=1e-5), name
        assert torch.allclose(g_parts, g_whole, atol=1e-6), name
