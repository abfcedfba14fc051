"""fhec.torch's QAT layers: plain-torch training with the program's arithmetic, compiled from the
model's own integers (docs/nn.md). Needs torch (installed by the test extra)."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

import fhec.torch as ft  # noqa: E402


def _train(net: nn.Module, X: np.ndarray, y: np.ndarray, epochs: int, lr: float = 0.02, bs: int = 64) -> float:
    torch.manual_seed(1)
    opt = torch.optim.Adam(net.parameters(), lr)
    Xt, yt = torch.tensor(X, dtype=torch.float32), torch.tensor(y)
    net.train()
    first = None
    for _ in range(epochs):
        perm = torch.randperm(len(Xt))
        for i in range(0, len(Xt), bs):
            idx = perm[i : i + bs]
            loss = F.cross_entropy(net(Xt[idx]), yt[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            first = float(loss.detach()) if first is None else first
    net.eval()
    return first


@pytest.fixture(scope="module")
def digits():
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    X, y = load_digits(return_X_y=True)
    X = (X / 16.0).reshape(-1, 1, 8, 8).astype(np.float32)
    return train_test_split(X, y, test_size=0.2, random_state=0, stratify=y)


def _cnn(stride: int = 1, padding: int = 0) -> nn.Sequential:
    side = (8 + 2 * padding - 3) // stride + 1
    pooled = side // 2
    return nn.Sequential(
        ft.QuantInput(3),
        ft.QuantConv2d(1, 4, 3, stride=stride, padding=padding, n_w_bits=3, n_accum_bits=7),
        ft.QuantReLU(3),
        ft.QuantAvgPool2d(2),
        ft.QuantIdentity(3),
        nn.Flatten(),
        ft.QuantLinear(4 * pooled * pooled, 10, n_w_bits=3, n_accum_bits=8),
    )


@pytest.fixture(scope="module")
def cnn(digits):
    Xtr, Xte, ytr, yte = digits
    torch.manual_seed(0)
    net = _cnn()
    _train(net, Xtr, ytr, epochs=15)
    return net, ft.compile_torch_model(net, Xtr, import_qat=True)


def test_a_qat_cnn_learns_and_runs_encrypted_exactly(digits, cnn):
    Xtr, Xte, ytr, yte = digits
    net, qm = cnn
    with torch.no_grad():
        out = net(torch.tensor(Xte))
    assert isinstance(out, ft.QValue)
    # the model's own prediction (torch sees the reals) and the program's integers agree on every sample
    acc = float((out.argmax(1) == torch.tensor(yte)).float().mean())
    assert acc >= 0.85, acc
    ints = qm._integers(qm.quantize_input(Xte), "disable")
    assert np.array_equal(ints, out.ints.numpy().astype(np.int64))
    clear = qm.forward(Xte, fhe="disable")
    assert np.abs(clear - out.real.numpy()).max() < 1e-5
    assert np.array_equal(qm.forward(Xte, fhe="simulate"), clear)
    assert np.array_equal(qm.forward(Xte[:1], fhe="execute"), clear[:1])
    # the edges of what the program accepts: all lowest, all highest, far outside the calibrated range
    # (clipped by the client and by QuantInput alike), and extreme pixels in a checkerboard
    edges = np.stack([np.zeros((1, 8, 8)), np.ones((1, 8, 8)), np.full((1, 8, 8), -5.0), np.full((1, 8, 8), 7.0),
                      np.indices((1, 8, 8)).sum(axis=0) % 2 * 3.0 - 1.0]).astype(np.float32)
    with torch.no_grad():
        edge_out = net(torch.tensor(edges))
    edge_ints = qm._integers(qm.quantize_input(edges), "simulate")
    assert np.array_equal(edge_ints, edge_out.ints.numpy().astype(np.int64))
    assert np.array_equal(edge_ints, qm._integers(qm.quantize_input(edges), "disable"))
    kinds = [(r["kind"], r["elements"]) for r in qm.bitwidth_report()]
    assert kinds == [("accumulator", 144), ("lookup", 144), ("accumulator", 36), ("lookup", 36), ("accumulator", 10)]
    # n_accum_bits bounds each weighted layer's accumulator over every accepted input
    bits = [r["bits"] for r in qm.bitwidth_report() if r["kind"] == "accumulator"]
    assert bits[0] <= 7 and bits[2] <= 8
    assert qm.input_shape == (1, 8, 8)


@pytest.mark.parametrize("stride,padding", [(2, 1), (1, 1)])
def test_strided_and_padded_convolutions_are_exact(digits, stride, padding):
    Xtr, Xte, ytr, yte = digits
    torch.manual_seed(2)
    net = _cnn(stride, padding)
    _train(net, Xtr[:300], ytr[:300], epochs=2)
    qm = ft.compile_torch_model(net, Xtr[:300], import_qat=True)
    with torch.no_grad():
        out = net(torch.tensor(Xte[:80]))
    ints = qm._integers(qm.quantize_input(Xte[:80]), "simulate")
    assert np.array_equal(ints, out.ints.numpy().astype(np.int64))


def test_max_pooling_keeps_the_grid_and_is_exact(digits):
    Xtr, Xte, ytr, yte = digits
    torch.manual_seed(3)
    net = nn.Sequential(
        ft.QuantInput(3),
        ft.QuantConv2d(1, 4, 3, n_w_bits=3, n_accum_bits=7),
        ft.QuantReLU(3),
        ft.QuantMaxPool2d(2),
        nn.Flatten(),
        ft.QuantLinear(36, 10, n_w_bits=3),
    )
    _train(net, Xtr, ytr, epochs=8)
    with torch.no_grad():
        out = net(torch.tensor(Xte))
    assert float((out.argmax(1) == torch.tensor(yte)).float().mean()) >= 0.8
    qm = ft.compile_torch_model(net, Xtr, import_qat=True)
    assert [r["kind"] for r in qm.bitwidth_report()] == ["accumulator", "lookup", "maxpool", "accumulator"]
    ints = qm._integers(qm.quantize_input(Xte), "simulate")
    assert np.array_equal(ints, out.ints.numpy().astype(np.int64))
    assert np.array_equal(qm.forward(Xte[:1], fhe="execute"), qm.forward(Xte[:1]))
    with pytest.raises(ValueError, match="put the activation first"):
        nn.Sequential(ft.QuantInput(3), ft.QuantConv2d(1, 2, 3), ft.QuantMaxPool2d(2))(torch.tensor(Xtr[:4]))


def test_batch_norm_folds_into_the_lookups(digits):
    Xtr, Xte, ytr, yte = digits
    torch.manual_seed(4)
    net = nn.Sequential(
        ft.QuantInput(3),
        ft.QuantConv2d(1, 4, 3, n_w_bits=3, n_accum_bits=7, bias=False),
        nn.BatchNorm2d(4),
        ft.QuantReLU(3),
        ft.QuantAvgPool2d(2),
        ft.QuantIdentity(3),
        nn.Flatten(),
        ft.QuantLinear(36, 16, n_w_bits=3, n_accum_bits=8),
        nn.BatchNorm1d(16),
        ft.QuantReLU(3),
        ft.QuantLinear(16, 10, n_w_bits=3),
    )
    _train(net, Xtr, ytr, epochs=8)
    assert int(net[2].num_batches_tracked) > 0 and float(net[2].running_var.sum()) != 4.0
    with torch.no_grad():
        out = net(torch.tensor(Xte))
    assert float((out.argmax(1) == torch.tensor(yte)).float().mean()) >= 0.8
    qm = ft.compile_torch_model(net, Xtr, import_qat=True)
    # the normalisation costs nothing encrypted: the same layers as without it
    assert [r["kind"] for r in qm.bitwidth_report()].count("lookup") == 3
    ints = qm._integers(qm.quantize_input(Xte), "simulate")
    assert np.array_equal(ints, out.ints.numpy().astype(np.int64))
    with pytest.raises(ValueError, match="BatchNorm reads an accumulator"):
        nn.Sequential(ft.QuantInput(3), nn.BatchNorm2d(1))(torch.tensor(Xtr[:4]))


def test_an_activation_with_parameters_is_exact():
    rng = np.random.default_rng(5)
    X = rng.normal(size=(200, 3)).astype(np.float32)
    y = (X[:, 0] * X[:, 1] > 0).astype(np.int64)
    torch.manual_seed(5)
    net = nn.Sequential(ft.QuantInput(4), ft.QuantLinear(3, 8, n_accum_bits=8), ft.QuantActivation(nn.PReLU(), 3),
                        ft.QuantLinear(8, 2))
    _train(net, X, y, epochs=20, lr=0.05, bs=32)
    assert float(net[2].fn.weight.detach()) != 0.25  # PReLU's slope learned
    qm = ft.compile_torch_model(net, X, import_qat=True)
    with torch.no_grad():
        out = net(torch.tensor(X))
    assert np.array_equal(qm._integers(qm.quantize_input(X), "simulate"), out.ints.numpy().astype(np.int64))


class TabularNet(nn.Module):
    """A custom forward (not nn.Sequential), per-feature input grids, a sigmoid and a custom activation."""

    def __init__(self) -> None:
        super().__init__()
        self.q = ft.QuantInput(4, per_feature=True)
        self.fc1 = ft.QuantLinear(4, 12, n_w_bits=4, n_accum_bits=7, rounding_threshold_bits=3)
        self.a1 = ft.QuantActivation(torch.sigmoid, n_bits=3)
        self.fc2 = ft.QuantLinear(12, 8, n_w_bits=4, n_accum_bits=7)
        self.a2 = ft.QuantActivation(lambda z: z * torch.tanh(z), n_bits=3)
        self.fc3 = ft.QuantLinear(8, 3, n_w_bits=4)

    def forward(self, x):
        return self.fc3(self.a2(self.fc2(self.a1(self.fc1(self.q(x))))))


def test_a_custom_module_with_any_activation_is_exact():
    from sklearn.datasets import load_iris

    X, y = load_iris(return_X_y=True)
    X = X.astype(np.float32)  # what torch computes on: the client quantises the same values
    torch.manual_seed(0)
    net = TabularNet()
    first = _train(net, X, y, epochs=60, lr=0.05, bs=16)
    with torch.no_grad():
        out = net(torch.tensor(X, dtype=torch.float32))
    last = float(F.cross_entropy(out, torch.tensor(y)))
    assert last < first * 0.7, (first, last)
    assert float((out.argmax(1) == torch.tensor(y)).float().mean()) >= 0.9
    qm = ft.compile_torch_model(net, X, import_qat=True)
    # per-feature grids: each feature has its own quantiser
    assert len(set(qm.network["input"]["scale"])) == 4
    report = qm.bitwidth_report()
    assert [r["bits"] for r in report if r["kind"] == "lookup"] == [3, 4]
    ints = qm._integers(qm.quantize_input(X), "simulate")
    assert np.array_equal(ints, out.ints.numpy().astype(np.int64))
    assert np.array_equal(qm.forward(X[:1], fhe="execute"), qm.forward(X[:1]))


def test_a_trained_model_reloads_to_the_same_program(digits, cnn):
    Xtr, _, _, _ = digits
    net, qm = cnn
    state = net.state_dict()
    assert {"0.lo", "0.hi", "2.lo", "2.hi"} <= set(state)
    twin = _cnn()
    twin.load_state_dict(state)
    again = ft.compile_torch_model(twin, Xtr, import_qat=True)
    assert again.network == qm.network
    # eval mode keeps the calibrated ranges
    before = net[2].hi.clone()
    with torch.no_grad():
        net(torch.tensor(Xtr[:10]) * 5)
    assert torch.equal(net[2].hi, before)


def test_misuse_is_a_clear_error(digits):
    Xtr, _, _, _ = digits
    x = torch.tensor(Xtr[:4])
    with pytest.raises(ValueError, match="flatten first"):
        nn.Sequential(ft.QuantInput(3), ft.QuantLinear(64, 2))(x)
    with pytest.raises(TypeError, match="start the network with QuantInput"):
        ft.QuantLinear(64, 2)(x.flatten(1))
    with pytest.raises(ValueError, match="reads an accumulator"):
        nn.Sequential(ft.QuantInput(3), ft.QuantReLU(3))(x)
    with pytest.raises(ValueError, match="one grid per tensor"):
        nn.Sequential(ft.QuantInput(3), nn.Flatten(), ft.QuantLinear(64, 8), ft.QuantLinear(8, 2))(x)
    with pytest.raises(ValueError, match="before flattening"):
        nn.Sequential(ft.QuantInput(3), ft.QuantConv2d(1, 2, 3), nn.Flatten(), ft.QuantReLU(3))(x)
    with pytest.raises(ValueError, match="only flatten\\(1\\)"):
        ft.QuantInput(3)(x).flatten(2)
    with pytest.raises(ValueError, match="n_w_bits"):
        ft.QuantLinear(4, 2, n_w_bits=12)
    with pytest.raises(ValueError, match="activation="):
        ft.QuantActivation("swishy")
    with pytest.raises(ValueError, match="padding below the kernel"):
        ft.QuantConv2d(1, 2, 2, padding=2)
    with pytest.raises(ValueError, match="a 3×3 window on a 2×2 input"):
        nn.Sequential(ft.QuantInput(3), ft.QuantConv2d(1, 2, 7), ft.QuantReLU(3), ft.QuantAvgPool2d(3))(x)
    with pytest.raises(ValueError, match="cannot hold one weight"):
        nn.Sequential(ft.QuantInput(8), nn.Flatten(), ft.QuantLinear(64, 2, n_accum_bits=3))(x)
    with pytest.raises(ValueError, match="running statistics"):
        nn.Sequential(ft.QuantInput(3), ft.QuantConv2d(1, 2, 3), nn.BatchNorm2d(2, track_running_stats=False))(x)
    qat = _cnn()
    with pytest.raises(ValueError, match="import_qat=True"):
        ft.compile_torch_model(qat, Xtr[:8])
    with pytest.raises(ValueError, match="leave n_bits"):
        ft.compile_torch_model(qat, Xtr[:8], n_bits=6, import_qat=True)
    plain = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    with pytest.raises(TypeError, match="not a QValue"):
        ft.compile_torch_model(plain, Xtr[:8], import_qat=True)


def test_a_regressor_trains_with_a_hand_written_loss():
    rng = np.random.default_rng(0)
    X = rng.uniform(-1, 1, size=(400, 5)).astype(np.float32)
    y = (np.sin(2 * X[:, 0]) + X[:, 1] * X[:, 2]).astype(np.float32)
    torch.manual_seed(0)
    net = nn.Sequential(ft.QuantInput(4), ft.QuantLinear(5, 16, n_accum_bits=8), ft.QuantActivation(torch.tanh, 4),
                        ft.QuantLinear(16, 1))
    opt = torch.optim.Adam(net.parameters(), 0.02)
    Xt, yt = torch.tensor(X), torch.tensor(y)
    losses = []
    for _ in range(150):
        out = net(Xt)
        loss = ((out[:, 0] - yt) ** 2).mean()  # arithmetic on a QValue is on its reals
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.5 * losses[0], (losses[0], losses[-1])
    assert len(out) == 400
    net.eval()
    qm = ft.compile_torch_model(net, X, import_qat=True)
    with torch.no_grad():
        out = net(Xt)
    assert np.array_equal(qm._integers(qm.quantize_input(X), "simulate"), out.ints.numpy().astype(np.int64))
    assert np.abs(qm.forward(X)[:, 0] - out.real.numpy()[:, 0]).max() < 1e-5


def test_averaged_weights_compile_exactly(digits):
    """The weight-averaging recipe of docs/nn.md: torch's AveragedModel over the parameters only, copied
    back into the trained model (whose buffers keep the calibrated ranges), compiles to a program that
    reproduces the model's integers, and the averaged weights are not the last step's."""
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    Xtr, Xte, ytr, yte = digits
    torch.manual_seed(0)
    net = _cnn()
    opt = torch.optim.Adam(net.parameters(), 0.02)
    avg = AveragedModel(net, multi_avg_fn=get_ema_multi_avg_fn(0.9), use_buffers=False)
    Xt, yt = torch.tensor(Xtr), torch.tensor(ytr)
    net.train()
    for _ in range(5):
        for i in range(0, len(Xt), 64):
            loss = F.cross_entropy(net(Xt[i : i + 64]), yt[i : i + 64])
            opt.zero_grad()
            loss.backward()
            opt.step()
            avg.update_parameters(net)
    net.eval()
    ranges = {k: v.clone() for k, v in net.state_dict().items() if k.endswith((".lo", ".hi"))}
    last = [p.detach().clone() for p in net.parameters()]
    with torch.no_grad():
        for p, a in zip(net.parameters(), avg.module.parameters()):
            p.copy_(a)
    assert any(not torch.equal(p, q) for p, q in zip(net.parameters(), last))
    assert all(torch.equal(net.state_dict()[k], v) for k, v in ranges.items())
    qm = ft.compile_torch_model(net, Xtr, import_qat=True)
    with torch.no_grad():
        out = net(torch.tensor(Xte[:80]))
    ints = qm._integers(qm.quantize_input(Xte[:80]), "simulate")
    assert np.array_equal(ints, out.ints.numpy().astype(np.int64))
    assert (qm.forward(Xte[:80], fhe="disable").argmax(1) == yte[:80]).mean() > 0.7


class _ResNet(nn.Module):
    """A residual block (conv → BatchNorm, plus the block's input, then ReLU), pooled, then dense."""

    def __init__(self) -> None:
        super().__init__()
        self.inp = ft.QuantInput(3)
        self.conv1 = ft.QuantConv2d(1, 4, 3, padding=1, n_w_bits=3, n_accum_bits=8)
        self.act1 = ft.QuantReLU(3)
        self.conv2 = ft.QuantConv2d(4, 4, 3, padding=1, n_w_bits=3, n_accum_bits=9, bias=False)
        self.bn = nn.BatchNorm2d(4)
        self.add = ft.QuantAdd()
        self.act2 = ft.QuantReLU(3)
        self.pool = ft.QuantAvgPool2d(2)
        self.act3 = ft.QuantIdentity(3)
        self.fc = ft.QuantLinear(64, 10, n_w_bits=3)

    def forward(self, x):
        h = self.act1(self.conv1(self.inp(x)))
        h = self.act2(self.add(self.bn(self.conv2(h)), h))
        return self.fc(self.act3(self.pool(h)).flatten(1))


def test_a_residual_block_is_exact(digits):
    Xtr, Xte, ytr, yte = digits
    torch.manual_seed(6)
    net = _ResNet()
    _train(net, Xtr, ytr, epochs=6)
    with torch.no_grad():
        out = net(torch.tensor(Xte))
    assert float((out.argmax(1) == torch.tensor(yte)).float().mean()) >= 0.8
    qm = ft.compile_torch_model(net, Xtr, import_qat=True)
    # the sum costs no lookup: one rounded accumulator, one activation
    assert [r["kind"] for r in qm.bitwidth_report()].count("lookup") == 3
    ints = qm._integers(qm.quantize_input(Xte), "simulate")
    assert np.array_equal(ints, out.ints.numpy().astype(np.int64))
    assert np.array_equal(ints, qm._integers(qm.quantize_input(Xte), "disable"))
    # the edges of the accepted range: the lowest and highest pixels everywhere, and a checkerboard
    # of both (the model's own integers, simulated); the brightest image encrypted
    edges = np.stack([np.full((1, 8, 8), -3.0), np.full((1, 8, 8), 5.0),
                      np.indices((1, 8, 8)).sum(axis=0) % 2 * 8.0 - 3.0]).astype(np.float32)
    with torch.no_grad():
        edge_out = net(torch.tensor(edges))
    edge_ints = qm._integers(qm.quantize_input(edges), "simulate")
    assert np.array_equal(edge_ints, edge_out.ints.numpy().astype(np.int64))
    assert np.array_equal(qm.forward(edges[1:2], fhe="execute"), qm.forward(edges[1:2]))
    # the block's accumulator holds the skipped activation: n_accum_bits still bounds it
    block = [r for r in qm.bitwidth_report() if r["kind"] == "accumulator"][1]
    assert block["bits"] <= 9


def test_a_dense_skip_of_the_input_is_exact():
    rng = np.random.default_rng(7)
    X = rng.normal(size=(300, 6)).astype(np.float32)
    y = (X[:, :3].sum(axis=1) > X[:, 3:].sum(axis=1)).astype(np.int64)

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inp = ft.QuantInput(4)
            self.fc1 = ft.QuantLinear(6, 6, n_w_bits=4)
            self.add = ft.QuantAdd()
            self.act = ft.QuantActivation("tanh", 4)
            self.fc2 = ft.QuantLinear(6, 2, n_w_bits=4)

        def forward(self, x):
            q = self.inp(x)
            return self.fc2(self.act(self.add(self.fc1(q), q)))

    torch.manual_seed(8)
    net = Net()
    _train(net, X, y, epochs=10)
    qm = ft.compile_torch_model(net, X, import_qat=True)
    with torch.no_grad():
        out = net(torch.tensor(X[:100]))
    ints = qm._integers(qm.quantize_input(X[:100]), "simulate")
    assert np.array_equal(ints, out.ints.numpy().astype(np.int64))
    # a sample and the input box's corners (clipped by the client and by QuantInput alike), encrypted
    rows = np.vstack([X[:1], np.full((1, 6), -100.0), np.full((1, 6), 100.0),
                      np.array([[100.0, -100.0] * 3])]).astype(np.float32)
    with torch.no_grad():
        mine = net(torch.tensor(rows))
    assert np.array_equal(qm._integers(qm.quantize_input(rows), "execute"), mine.ints.numpy().astype(np.int64))


def test_misused_skips_are_clear_errors(digits):
    Xtr = torch.tensor(digits[0][:4])
    inp, conv, act, add = ft.QuantInput(3), ft.QuantConv2d(1, 1, 3, padding=1), ft.QuantReLU(3), ft.QuantAdd()
    q = inp(Xtr)
    h = act(conv(q))
    with pytest.raises(ValueError, match="adds to the accumulator"):
        add(h, q)
    with pytest.raises(ValueError, match="input or an activation"):
        add(conv(q), conv(q))
    with pytest.raises(ValueError, match="one shape"):
        add(ft.QuantConv2d(1, 2, 3, padding=1)(q), q)
    with pytest.raises(ValueError, match="same network"):
        add(conv(q), ft.QuantInput(3)(Xtr))
    with pytest.raises(TypeError):
        add(conv(q), Xtr)


def test_a_zero_batch_norm_weight_before_a_skip_is_a_clear_error(digits):
    Xtr = torch.tensor(digits[0][:8])
    inp, conv, bn, add = ft.QuantInput(3), ft.QuantConv2d(1, 1, 3, padding=1, bias=False), nn.BatchNorm2d(1), ft.QuantAdd()
    with torch.no_grad():
        bn.weight.zero_()
    q = inp(Xtr)
    with pytest.raises(ValueError, match="BatchNorm weight of 0"):
        add(bn(conv(q)), q)
