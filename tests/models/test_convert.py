"""`reseg weights convert`: a PyTorch ResNet state dict gives the same features in Keras.

The PyTorch networks are torchvision's ResNet written out here (module names and
layout of `torchvision.models.resnet`, so their state dicts have torchvision's
keys), randomly initialised, batch norm statistics included; nothing is downloaded.
"""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest

torch = pytest.importorskip("torch")  # the `test` extra installs it (CPU wheel)
nn = torch.nn

from reseg.cli import main  # noqa: E402
from reseg.errors import InputError  # noqa: E402
from reseg.models import build_model  # noqa: E402
from reseg.models.convert import convert, keras_encoder, load_state_dict  # noqa: E402


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes, planes, stride=1, downsample=None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU()
        self.downsample = downsample

    def forward(self, x):
        y = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
        return self.relu(y + (x if self.downsample is None else self.downsample(x)))


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes, planes, stride=1, downsample=None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)  # v1.5: stride here
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU()
        self.downsample = downsample

    def forward(self, x):
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        return self.relu(y + (x if self.downsample is None else self.downsample(x)))


class ResNet(nn.Module):
    """torchvision.models.ResNet with `bands` input channels; `features` gives the pyramid."""

    def __init__(self, block, layers, bands=3):
        super().__init__()
        self.inplanes = 64
        self.conv1 = nn.Conv2d(bands, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU()
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.layer1 = self._make_layer(block, 64, layers[0])
        self.layer2 = self._make_layer(block, 128, layers[1], 2)
        self.layer3 = self._make_layer(block, 256, layers[2], 2)
        self.layer4 = self._make_layer(block, 512, layers[3], 2)
        self.fc = nn.Linear(512 * block.expansion, 10)

    def _make_layer(self, block, planes, blocks, stride=1):
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(
                nn.Conv2d(self.inplanes, planes * block.expansion, 1, stride, bias=False),
                nn.BatchNorm2d(planes * block.expansion),
            )
        layers = [block(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * block.expansion
        layers += [block(self.inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def features(self, x):
        x = self.relu(self.bn1(self.conv1(x)))
        out = [x]
        x = self.maxpool(x)
        for layer in (self.layer1, self.layer2, self.layer3, self.layer4):
            x = layer(x)
            out.append(x)
        return out


NETWORKS = {
    "resnet18": (BasicBlock, [2, 2, 2, 2]),
    "resnet50_torchvision": (Bottleneck, [3, 4, 6, 3]),
}


def _torch_resnet(name: str, bands: int, seed: int = 0) -> ResNet:
    """A torchvision-layout ResNet in eval mode with random batch norm parameters and stats."""
    torch.manual_seed(seed)
    net = ResNet(*NETWORKS[name], bands=bands)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.0)
                m.bias.normal_(0.0, 0.1)
                m.running_mean.normal_(0.0, 0.1)
                m.running_var.uniform_(1.0, 2.0)
    return net.eval()


def _features(net: ResNet, x: np.ndarray) -> list[np.ndarray]:
    with torch.no_grad():
        out = net.features(torch.from_numpy(x.transpose(0, 3, 1, 2)))
    return [f.numpy().transpose(0, 2, 3, 1) for f in out]


@pytest.mark.parametrize("name", ["resnet18", "resnet50_torchvision"])
def test_converted_encoder_gives_the_pytorch_features(tmp_path, name):
    net = _torch_resnet(name, 3)
    source = str(tmp_path / f"{name}.pth")
    torch.save({"state_dict": {f"module.{k}": v for k, v in net.state_dict().items()}}, source)
    encoder = keras_encoder(load_state_dict(source))
    x = np.random.default_rng(0).normal(size=(2, 64, 96, 3)).astype("float32")
    want = _features(net, x)
    got = [np.asarray(f) for f in encoder(x)]
    assert [g.shape for g in got] == [w.shape for w in want]
    for g, w in zip(got, want, strict=True):
        assert np.abs(w).max() > 0.1  # features worth comparing
        assert np.abs(g - w).max() <= 1e-4


def test_the_command_records_the_band_order_and_unet_loads_multispectral_weights(
    tmp_path, caplog, capsys
):
    net = _torch_resnet("resnet18", 4, seed=1)
    source, out = str(tmp_path / "s2.pth"), str(tmp_path / "s2.weights.h5")
    torch.save(net.state_dict(), source)
    assert main(["weights", "convert", source, out, "--band-order", "B2,B3,B4,B8"]) == 0
    info = json.loads(open(f"{out}.json").read())
    assert info == {
        "encoder": "resnet18",
        "bands": 4,
        "band_order": ["B2", "B3", "B4", "B8"],
        "source": "s2.pth",
    }
    with caplog.at_level(logging.INFO, logger="reseg.models.backbones"):
        model = build_model("unet", 3, 4, encoder="resnet18", encoder_weights=out, base_filters=4)
    assert "['B2', 'B3', 'B4', 'B8']" in caplog.text
    x = np.random.default_rng(1).normal(size=(1, 32, 32, 4)).astype("float32")
    got = model.get_layer("encoder")(x)
    for g, w in zip(got, _features(net, x), strict=True):
        assert np.abs(np.asarray(g) - w).max() <= 1e-4


def test_bad_inputs_are_one_line_errors(tmp_path, capsys):
    net = _torch_resnet("resnet18", 3)
    source = str(tmp_path / "r18.pth")
    torch.save(net.state_dict(), source)
    with pytest.raises(InputError, match="is a resnet18, not a resnet34"):
        convert(source, str(tmp_path / "x.weights.h5"), encoder="resnet34")
    with pytest.raises(InputError, match="names 2 bands but the weights take 3"):
        convert(source, str(tmp_path / "x.weights.h5"), band_order=["R", "G"])
    assert main(["weights", "convert", str(tmp_path / "none.pth"), "o.weights.h5"]) == 3
    assert "none.pth: no such file" in capsys.readouterr().err
