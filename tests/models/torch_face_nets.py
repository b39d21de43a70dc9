"""PyTorch references with the public module names, so ``state_dict()`` keys match the released checkpoints.

- ``Vgg_face_dag``: Albanie's ``vgg_face_dag.py`` (weights ``vgg_face_dag.pth``): ``conv1_1`` ... ``conv5_3``,
  ``relu*``, ``pool1`` ... ``pool5``, ``fc6``, ``relu6``, ``dropout6``, ``fc7``, ``relu7``, ``dropout7``, ``fc8``,
  registered in that order. ``fc_features`` / ``num_classes`` shrink the head for fast tests (4096 / 2622 as
  published); ReLUs are not in place, so captured conv outputs stay intact (the state dict is the same).
- ``network_29layers_v2`` with ``mfm``, ``group``, ``resblock``: AlfredXiangWu/LightCNN's ``light_cnn.py``.

Only imported by tests that have already done ``pytest.importorskip("torch")``.
"""

import torch
import torch.nn.functional as F
from torch import nn

VGG_BLOCKS = ((64, 2), (128, 2), (256, 3), (512, 3), (512, 3))


class Vgg_face_dag(nn.Module):
    def __init__(self, num_classes: int = 2622, fc_features: int = 4096):
        super().__init__()
        self.meta = {
            "mean": [129.186279296875, 104.76238250732422, 93.59396362304688],
            "std": [1, 1, 1],
            "imageSize": [224, 224, 3],
        }
        previous = 3
        for block, (channels, convs) in enumerate(VGG_BLOCKS, 1):
            for i in range(1, convs + 1):
                setattr(self, f"conv{block}_{i}", nn.Conv2d(previous, channels, 3, 1, 1))
                setattr(self, f"relu{block}_{i}", nn.ReLU())
                previous = channels
            setattr(self, f"pool{block}", nn.MaxPool2d(2, 2))
        self.fc6 = nn.Linear(512 * 7 * 7, fc_features)
        self.relu6, self.dropout6 = nn.ReLU(), nn.Dropout(0.5)
        self.fc7 = nn.Linear(fc_features, fc_features)
        self.relu7, self.dropout7 = nn.ReLU(), nn.Dropout(0.5)
        self.fc8 = nn.Linear(fc_features, num_classes)

    def features(self, x: torch.Tensor, layers) -> dict[int, torch.Tensor]:
        """Activations after the modules at ``layers`` (indices into the first 31 children, conv1_1 ... pool5)."""
        out = {}
        for index, layer in enumerate(list(self.children())[:31]):
            x = layer(x)
            if index in layers:
                out[index] = x
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x, (30,))[30].flatten(1)
        x = self.dropout6(self.relu6(self.fc6(x)))
        return self.fc8(self.dropout7(self.relu7(self.fc7(x))))


class mfm(nn.Module):
    def __init__(self, in_channels, out_channels, kernel_size=3, stride=1, padding=1, type=1):
        super().__init__()
        self.out_channels = out_channels
        if type == 1:
            self.filter = nn.Conv2d(in_channels, 2 * out_channels, kernel_size, stride, padding)
        else:
            self.filter = nn.Linear(in_channels, 2 * out_channels)

    def forward(self, x):
        first, second = torch.split(self.filter(x), self.out_channels, 1)
        return torch.max(first, second)


class group(nn.Module):
    def __init__(self, in_channels, out_channels, kernel_size, stride, padding):
        super().__init__()
        self.conv_a = mfm(in_channels, in_channels, 1, 1, 0)
        self.conv = mfm(in_channels, out_channels, kernel_size, stride, padding)

    def forward(self, x):
        return self.conv(self.conv_a(x))


class resblock(nn.Module):
    def __init__(self, in_channels, out_channels):
        super().__init__()
        self.conv1 = mfm(in_channels, out_channels, 3, 1, 1)
        self.conv2 = mfm(in_channels, out_channels, 3, 1, 1)

    def forward(self, x):
        return self.conv2(self.conv1(x)) + x


def _pool(x):
    return F.max_pool2d(x, 2) + F.avg_pool2d(x, 2)


class network_29layers_v2(nn.Module):
    def __init__(self, block, layers, num_classes=80013):
        super().__init__()
        self.conv1 = mfm(1, 48, 5, 1, 2)
        self.block1 = nn.Sequential(*(block(48, 48) for _ in range(layers[0])))
        self.group1 = group(48, 96, 3, 1, 1)
        self.block2 = nn.Sequential(*(block(96, 96) for _ in range(layers[1])))
        self.group2 = group(96, 192, 3, 1, 1)
        self.block3 = nn.Sequential(*(block(192, 192) for _ in range(layers[2])))
        self.group3 = group(192, 128, 3, 1, 1)
        self.block4 = nn.Sequential(*(block(128, 128) for _ in range(layers[3])))
        self.group4 = group(128, 128, 3, 1, 1)
        self.fc = nn.Linear(8 * 8 * 128, 256)
        self.fc2 = nn.Linear(256, num_classes, bias=False)

    def forward(self, x):
        x = _pool(self.conv1(x))
        x = _pool(self.group1(self.block1(x)))
        x = _pool(self.group2(self.block2(x)))
        x = self.group3(self.block3(x))
        x = _pool(self.group4(self.block4(x)))
        fc = self.fc(x.flatten(1))
        return self.fc2(F.dropout(fc, training=self.training)), fc


def LightCNN_29Layers_v2(**kwargs):
    return network_29layers_v2(resblock, [1, 2, 3, 4], **kwargs)
