"""Ensemble / MC-dropout / flip-TTA inferers against float64 hand computations and closed forms."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from monai.data import MetaTensor
from monai.inferers import SlidingWindowInferer

from monai_meep.inferers import (
    EnsembleInferer,
    FlipTTAInferer,
    MCDropoutInferer,
    ProbabilityAccumulator,
    mc_dropout_mode,
)


def _net(seed: int, dropout: float = 0.0, kernel: int = 1) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(
        torch.nn.Conv3d(1, 4, kernel, padding=kernel // 2),
        torch.nn.BatchNorm3d(4),
        torch.nn.Dropout(dropout),
        torch.nn.PReLU(),
        torch.nn.Conv3d(4, 3, 1),
    )


def _x(seed: int = 0, shape=(2, 1, 6, 5, 4)) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def _h64(p: torch.Tensor) -> torch.Tensor:
    """Categorical entropy over dim 1, float64."""
    p = p.double()
    return -torch.special.xlogy(p, p).sum(1, keepdim=True)


class _Const:
    """A hand-made member: returns fixed probabilities (B, C, *spatial), whatever the input."""

    def __init__(self, probs: torch.Tensor) -> None:
        self.probs = probs

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.probs.expand(x.shape[0], -1, *x.shape[2:])


# ------------------------------------------------------------------------------------------------------ ensemble


def test_ensemble_of_identical_models_is_the_single_model():
    net, x = _net(0).eval(), _x()
    with torch.no_grad():
        single = torch.softmax(net(x), 1)
    out = EnsembleInferer()(x, [net, copy.deepcopy(net), copy.deepcopy(net)])
    assert out.num_samples == 3 and out.probs.shape == (2, 3, 6, 5, 4) and out.probs.dtype == torch.float32
    torch.testing.assert_close(out.probs, single, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(out.entropy, _h64(single).float(), rtol=1e-5, atol=1e-6)
    assert out.entropy.shape == out.mutual_information.shape == (2, 1, 6, 5, 4)
    assert out.mutual_information.abs().max() < 1e-6  # identical members: no disagreement


def test_ensemble_mean_entropy_and_mi_equal_float64_hand_computation():
    nets, x = [_net(s).eval() for s in (1, 2, 3)], _x(1)
    with torch.no_grad():
        members = [torch.softmax(copy.deepcopy(n).double()(x.double()), 1) for n in nets]
    mean = sum(members) / 3
    mi = _h64(mean) - sum(_h64(p) for p in members) / 3
    out = EnsembleInferer()(x, nets)
    torch.testing.assert_close(out.probs.double(), mean, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(out.entropy.double(), _h64(mean), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(out.mutual_information.double(), mi, rtol=1e-4, atol=1e-6)
    assert (out.mutual_information >= 0).all() and out.mutual_information.max() > 1e-3
    # float64 outputs are averaged in float64
    out64 = EnsembleInferer()(x.double(), [copy.deepcopy(n).double() for n in nets])
    assert out64.probs.dtype == torch.float64
    torch.testing.assert_close(out64.probs, mean, rtol=1e-12, atol=1e-12)


def test_mutual_information_closed_form_for_two_hand_made_members():
    """Members (0.9, 0.1) and (0.1, 0.9): MI = log 2 - h(0.9); plus one agreeing voxel with MI = 0."""
    a = torch.tensor([[0.9, 0.3], [0.1, 0.7]]).reshape(1, 2, 2, 1)
    b = torch.tensor([[0.1, 0.3], [0.9, 0.7]]).reshape(1, 2, 2, 1)
    out = EnsembleInferer(activation="none")(torch.zeros(1, 1, 2, 1), [_Const(a), _Const(b)])
    h9 = -(0.9 * math.log(0.9) + 0.1 * math.log(0.1))
    h3 = -(0.3 * math.log(0.3) + 0.7 * math.log(0.7))
    torch.testing.assert_close(out.probs[0, :, :, 0], torch.tensor([[0.5, 0.3], [0.5, 0.7]]))
    torch.testing.assert_close(out.entropy.flatten(), torch.tensor([math.log(2), h3]), rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(
        out.mutual_information.flatten(), torch.tensor([math.log(2) - h9, 0.0]), atol=1e-6, rtol=0
    )


def test_sigmoid_members_use_bernoulli_entropies():
    logits = torch.tensor([[-1.0, 2.0], [0.5, 0.0]]).reshape(1, 2, 2, 1)  # two independent binary channels
    out = EnsembleInferer(activation="sigmoid")(torch.zeros(1, 1, 2, 1), [_Const(logits), _Const(-logits)])
    torch.testing.assert_close(out.probs, torch.full_like(logits, 0.5))  # sigmoid(l) and sigmoid(-l) average to 1/2
    torch.testing.assert_close(out.entropy, torch.full((1, 1, 2, 1), 2 * math.log(2)))  # two channels at 1/2
    p = torch.sigmoid(logits.double())
    member_h = -(torch.special.xlogy(p, p) + torch.special.xlogy(1 - p, 1 - p)).sum(1, keepdim=True)
    torch.testing.assert_close(out.mutual_information.double(), 2 * math.log(2) - member_h, atol=1e-6, rtol=1e-5)


def test_ensemble_streams_a_generator_keeps_modes_and_skips_mi_when_asked():
    nets = [_net(s) for s in (4, 5)]
    nets[0].train()
    nets[1].eval()
    x = _x(2)
    expected = EnsembleInferer()(x, nets).probs  # eval-mode prediction of each member
    assert nets[0].training and all(m.training for m in nets[0].modules()) and not nets[1].training
    out = EnsembleInferer(mutual_information=False)(x, (n for n in nets))
    assert out.mutual_information is None and set(out.as_dict()) == {"prob", "entropy"}
    torch.testing.assert_close(out.probs, expected)
    torch.testing.assert_close(EnsembleInferer()(x, torch.nn.ModuleList(nets)).probs, expected)


def test_sliding_window_members_keep_metatensor_metadata():
    net, x = _net(6).eval(), MetaTensor(_x(3, (1, 1, 8, 8, 8)), affine=torch.diag(torch.tensor([2.0, 2, 2, 1])))
    sw = SlidingWindowInferer(roi_size=(4, 4, 4), sw_batch_size=2, overlap=0.5, mode="gaussian")
    out = EnsembleInferer(inferer=sw)(x, [net])
    with torch.no_grad():
        plain = torch.softmax(net(x.as_tensor()), 1)  # pointwise net: the windows stitch to the whole prediction
    assert isinstance(out.probs, MetaTensor) and isinstance(out.entropy, MetaTensor)
    torch.testing.assert_close(out.probs.affine, x.affine)
    torch.testing.assert_close(out.probs.as_tensor(), plain, rtol=1e-5, atol=1e-6)


# --------------------------------------------------------------------------------------------------- MC dropout


def _record_modes(net: torch.nn.Module) -> dict[str, list[bool]]:
    seen: dict[str, list[bool]] = {"bn": [], "dropout": []}
    net[1].register_forward_hook(lambda m, i, o: seen["bn"].append(m.training))
    net[2].register_forward_hook(lambda m, i, o: seen["dropout"].append(m.training))
    return seen


def test_mc_dropout_with_rate_zero_is_the_deterministic_pass_and_batchnorm_stays_in_eval():
    net, x = _net(7, dropout=0.0), _x(4)
    net.train()
    with torch.no_grad():
        net(x)  # move the running stats away from their init
    net.eval()
    with torch.no_grad():
        expected = torch.softmax(net(x), 1)
    net.train()
    stats = net[1].running_mean.clone(), net[1].running_var.clone(), int(net[1].num_batches_tracked)
    seen = _record_modes(net)
    out = MCDropoutInferer(num_samples=3)(x, net)
    assert out.num_samples == 3 and seen == {"bn": [False] * 3, "dropout": [True] * 3}
    torch.testing.assert_close(out.probs, expected, rtol=1e-6, atol=1e-7)
    assert out.mutual_information.abs().max() < 1e-6
    torch.testing.assert_close(net[1].running_mean, stats[0], rtol=0, atol=0)  # no update of the statistics
    torch.testing.assert_close(net[1].running_var, stats[1], rtol=0, atol=0)
    assert int(net[1].num_batches_tracked) == stats[2]
    assert all(m.training for m in net.modules())  # restored


def test_mc_dropout_is_seedable_stochastic_and_leaves_the_global_rng_alone():
    net, x = _net(8, dropout=0.5).eval(), _x(5)
    torch.manual_seed(123)
    state = torch.get_rng_state()
    a = MCDropoutInferer(num_samples=4, seed=1)(x, net)
    assert torch.equal(torch.get_rng_state(), state)
    b = MCDropoutInferer(num_samples=4, seed=1)(x, net)
    c = MCDropoutInferer(num_samples=4, seed=2)(x, net)
    torch.testing.assert_close(a.probs, b.probs, rtol=0, atol=0)
    assert not torch.allclose(a.probs, c.probs)
    assert a.mutual_information.max() > 1e-3 and (a.mutual_information >= 0).all()
    assert not any(m.training for m in net.modules())
    state = torch.get_rng_state()
    MCDropoutInferer(num_samples=1)(x, net)  # unseeded: draws from the global generator
    assert not torch.equal(torch.get_rng_state(), state)


def test_modes_are_restored_after_an_exception():
    net = _net(9, dropout=0.3)
    net.train()
    net[1].eval()  # a frozen BatchNorm inside a training network
    before = [m.training for m in net.modules()]

    class Boom(RuntimeError):
        pass

    def failing(inputs, network):
        assert network[2].training and not network[1].training and not network[0].training
        raise Boom

    with pytest.raises(Boom):
        MCDropoutInferer(num_samples=2, inferer=failing)(_x(), net)
    assert [m.training for m in net.modules()] == before
    with pytest.raises(Boom), mc_dropout_mode(net):
        raise Boom
    assert [m.training for m in net.modules()] == before

    def failing_eval(inputs, network):
        assert not any(m.training for m in network.modules())
        raise Boom

    with pytest.raises(Boom):
        EnsembleInferer(inferer=failing_eval)(_x(), [net])
    with pytest.raises(Boom):
        FlipTTAInferer(inferer=failing_eval)(_x(), net)
    assert [m.training for m in net.modules()] == before


# -------------------------------------------------------------------------------------------------- flip TTA


def test_tta_of_a_pointwise_model_is_the_plain_prediction():
    net, x = _net(10).eval(), _x(6)
    with torch.no_grad():
        plain = torch.softmax(net(x), 1)
    out = FlipTTAInferer()(x, net)
    assert out.num_samples == 8
    torch.testing.assert_close(out.probs, plain, rtol=1e-6, atol=1e-7)
    assert out.mutual_information.abs().max() < 1e-6
    assert FlipTTAInferer(spatial_axes=(0, -1))(x, net).num_samples == 4


def test_tta_equals_float64_hand_computation_for_a_non_equivariant_model():
    net, x = _net(11, kernel=3).eval(), _x(7)
    net64 = copy.deepcopy(net).double()
    with torch.no_grad():
        p = [torch.softmax(net64(x.double()), 1), torch.softmax(net64(x.double().flip(3)), 1).flip(3)]
    out = FlipTTAInferer(spatial_axes=1)(x, net)
    assert out.num_samples == 2
    torch.testing.assert_close(out.probs.double(), (p[0] + p[1]) / 2, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(p[0], p[1], atol=1e-3)  # the flip mattered
    assert FlipTTAInferer().flips(2) == [(), (2,), (3,), (2, 3)]


# ------------------------------------------------------------------------------------------------- bad inputs


def test_bad_inputs_raise_clear_errors():
    x, net = _x(), _net(12, dropout=0.1)
    with pytest.raises(ValueError, match="at least one network"):
        EnsembleInferer()(x, [])
    with pytest.raises(TypeError, match="sequence of networks"):
        EnsembleInferer()(x, net)
    with pytest.raises(TypeError, match="member 1 is not callable"):
        EnsembleInferer()(x, [net, "model.pt"])
    with pytest.raises(ValueError, match="same classes on the same grid"):
        EnsembleInferer()(x, [net, torch.nn.Conv3d(1, 2, 1)])
    with pytest.raises(TypeError, match="inputs must be a tensor"):
        EnsembleInferer()(x.numpy(), [net])
    with pytest.raises(ValueError, match="activation|softmax"):
        EnsembleInferer(activation="softmaxx")
    with pytest.raises(TypeError, match="inferer must be"):
        EnsembleInferer(inferer="sliding_window")
    with pytest.raises(ValueError, match="num_samples must be >= 1"):
        MCDropoutInferer(num_samples=0)
    with pytest.raises(TypeError, match="num_samples must be an integer"):
        MCDropoutInferer(num_samples=2.5)
    with pytest.raises(TypeError, match="seed"):
        MCDropoutInferer(seed="1")
    with pytest.raises(ValueError, match="no dropout layer"):
        MCDropoutInferer()(x, torch.nn.Conv3d(1, 2, 1))
    with pytest.raises(TypeError, match="torch.nn.Module"):
        MCDropoutInferer()(x, lambda t: t)
    with pytest.raises(ValueError, match="out of range for 3 spatial dims"):
        FlipTTAInferer(spatial_axes=(0, 3))(x, net)
    with pytest.raises(ValueError, match="same axis twice"):
        FlipTTAInferer(spatial_axes=(0, -3))(x, net)
    with pytest.raises(ValueError, match="empty"):
        FlipTTAInferer(spatial_axes=())
    with pytest.raises(TypeError, match="integers"):
        FlipTTAInferer(spatial_axes=(0.0,))
    with pytest.raises(ValueError, match="input grid"):
        FlipTTAInferer()(x, torch.nn.Conv3d(1, 2, 3))  # no padding: a smaller output grid
    with pytest.raises(TypeError, match="one tensor"):
        FlipTTAInferer()(x, lambda t: (t, t))  # deep-supervision style tuple
    acc = ProbabilityAccumulator()
    with pytest.raises(ValueError, match="nothing to average"):
        acc.result()
    with pytest.raises(ValueError, match="activation='sigmoid'"):
        acc.add(torch.randn(1, 1, 4, 4))
    with pytest.raises(TypeError, match="one tensor"):
        acc.add((torch.randn(1, 2, 4, 4),))
    with pytest.raises(ValueError, match="probabilities in"):
        ProbabilityAccumulator("none").add(torch.randn(1, 2, 4, 4) * 5)
