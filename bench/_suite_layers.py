"""The network suite's layers (bench/suite.py): the convolution and pooling layers of
ResNet-18, ResNet-50, MobileNet V1 and V2, VGG-16, U-Net and ResNet-20 (CIFAR-10), with
the shapes of the architectures' definitions and how often each shape occurs.

A row is ``Layer(name, kind, c_in, h, w, c_out, k, stride, pad, groups, repeat)``:
  kind "conv": a convolution of an (N, c_in, h, w) input, k x k kernel, stride, zero
      padding `pad` on every side, `groups` groups (groups == c_in: depthwise);
  kind "up": a transposed convolution (U-Net's up-convolutions, 2x2 stride 2): input
      (N, c_in, h, w) -> (N, c_out, h * stride, w * stride), run by fastconv as
      conv2d_grad_input, by PyTorch as conv_transpose2d, by ONNX Runtime as ConvTranspose;
  kind "maxpool": k x k max pooling, stride, padding `pad` (c_out = c_in);
  kind "gap": global average pooling.
Shapes where one architecture repeats a layer are listed once with their repeat count,
so a network's total is sum(repeat x time).  Sources: torchvision's resnet.py
(ResNet-18/50, stride on the 3x3 of the bottleneck, "v1.5"), Howard et al. 2017 Table 1
(MobileNet V1), Sandler et al. 2018 Table 2 (MobileNet V2, width 1.0), Simonyan &
Zisserman 2014 configuration D (VGG-16), Ronneberger et al. 2015 with "same" padding at
224x224 (U-Net), He et al. 2016 section 4.2 (ResNet-20, n = 3, option A shortcuts: no
projection convolutions).
"""
from typing import NamedTuple


class Layer(NamedTuple):
    name: str
    kind: str
    c_in: int
    h: int
    w: int
    c_out: int
    k: int = 1
    stride: int = 1
    pad: int = 0
    groups: int = 1
    repeat: int = 1

    @property
    def out_hw(self):
        if self.kind == "up":
            return self.h * self.stride, self.w * self.stride
        if self.kind == "gap":
            return 1, 1
        return ((self.h + 2 * self.pad - self.k) // self.stride + 1,
                (self.w + 2 * self.pad - self.k) // self.stride + 1)

    @property
    def macs(self):
        """Multiply-adds of the forward pass for one image (0 for pooling)."""
        if self.kind == "conv":
            oh, ow = self.out_hw
            return oh * ow * self.c_out * (self.c_in // self.groups) * self.k * self.k
        if self.kind == "up":
            return self.h * self.w * self.c_in * self.c_out * self.k * self.k
        return 0

    def describe(self):
        oh, ow = self.out_hw
        if self.kind in ("conv", "up"):
            g = (" dw" if self.groups == self.c_in and self.groups > 1 else
                 f" g{self.groups}" if self.groups > 1 else "")
            t = " up" if self.kind == "up" else ""
            return (f"{self.c_in}->{self.c_out} {self.k}x{self.k}/{self.stride}{g}{t} "
                    f"{self.h}->{oh}")
        if self.kind == "maxpool":
            return f"max {self.k}x{self.k}/{self.stride} p{self.pad} {self.c_in}@{self.h}"
        return f"gap {self.c_in}@{self.h}x{self.w}"


def conv(name, c_in, hw, c_out, k, stride=1, groups=1, repeat=1):
    """A "same"-style convolution (padding k // 2, as the architectures use)."""
    return Layer(name, "conv", c_in, hw, hw, c_out, k, stride, k // 2, groups, repeat)


def dw(name, c, hw, stride=1, repeat=1):
    return conv(name, c, hw, c, 3, stride, c, repeat)


def pw(name, c_in, hw, c_out, repeat=1):
    return conv(name, c_in, hw, c_out, 1, 1, 1, repeat)


def maxpool(name, c, hw, k, stride, pad=0, repeat=1):
    return Layer(name, "maxpool", c, hw, hw, c, k, stride, pad, 1, repeat)


def gap(name, c, hw):
    return Layer(name, "gap", c, hw, hw, c)


RESNET18 = [
    conv("stem", 3, 224, 64, 7, 2),
    maxpool("pool", 64, 112, 3, 2, 1),
    conv("l1.3x3", 64, 56, 64, 3, repeat=4),
    conv("l2.3x3s2", 64, 56, 128, 3, 2),
    conv("l2.3x3", 128, 28, 128, 3, repeat=3),
    conv("l2.down", 64, 56, 128, 1, 2),
    conv("l3.3x3s2", 128, 28, 256, 3, 2),
    conv("l3.3x3", 256, 14, 256, 3, repeat=3),
    conv("l3.down", 128, 28, 256, 1, 2),
    conv("l4.3x3s2", 256, 14, 512, 3, 2),
    conv("l4.3x3", 512, 7, 512, 3, repeat=3),
    conv("l4.down", 256, 14, 512, 1, 2),
    gap("gap", 512, 7),
]

RESNET50 = [
    conv("stem", 3, 224, 64, 7, 2),
    maxpool("pool", 64, 112, 3, 2, 1),
    pw("l1.reduce0", 64, 56, 64),
    pw("l1.reduce", 256, 56, 64, repeat=2),
    conv("l1.3x3", 64, 56, 64, 3, repeat=3),
    pw("l1.expand", 64, 56, 256, repeat=4),          # 3 expansions + the projection
    pw("l2.reduce0", 256, 56, 128),
    conv("l2.3x3s2", 128, 56, 128, 3, 2),
    pw("l2.expand", 128, 28, 512, repeat=4),
    conv("l2.down", 256, 56, 512, 1, 2),
    pw("l2.reduce", 512, 28, 128, repeat=3),
    conv("l2.3x3", 128, 28, 128, 3, repeat=3),
    pw("l3.reduce0", 512, 28, 256),
    conv("l3.3x3s2", 256, 28, 256, 3, 2),
    pw("l3.expand", 256, 14, 1024, repeat=6),
    conv("l3.down", 512, 28, 1024, 1, 2),
    pw("l3.reduce", 1024, 14, 256, repeat=5),
    conv("l3.3x3", 256, 14, 256, 3, repeat=5),
    pw("l4.reduce0", 1024, 14, 512),
    conv("l4.3x3s2", 512, 14, 512, 3, 2),
    pw("l4.expand", 512, 7, 2048, repeat=3),
    conv("l4.down", 1024, 14, 2048, 1, 2),
    pw("l4.reduce", 2048, 7, 512, repeat=2),
    conv("l4.3x3", 512, 7, 512, 3, repeat=2),
    gap("gap", 2048, 7),
]

MOBILENET_V1 = [
    conv("stem", 3, 224, 32, 3, 2),
    dw("dw1", 32, 112), pw("pw1", 32, 112, 64),
    dw("dw2s2", 64, 112, 2), pw("pw2", 64, 56, 128),
    dw("dw3", 128, 56), pw("pw3", 128, 56, 128),
    dw("dw4s2", 128, 56, 2), pw("pw4", 128, 28, 256),
    dw("dw5", 256, 28), pw("pw5", 256, 28, 256),
    dw("dw6s2", 256, 28, 2), pw("pw6", 256, 14, 512),
    dw("dw7", 512, 14, repeat=5), pw("pw7", 512, 14, 512, repeat=5),
    dw("dw8s2", 512, 14, 2), pw("pw8", 512, 7, 1024),
    dw("dw9", 1024, 7), pw("pw9", 1024, 7, 1024),
    gap("gap", 1024, 7),
]

MOBILENET_V2 = [
    conv("stem", 3, 224, 32, 3, 2),
    dw("b1.dw", 32, 112), pw("b1.project", 32, 112, 16),
    pw("b2.expand0", 16, 112, 96), dw("b2.dws2", 96, 112, 2),
    pw("b2.project0", 96, 56, 24),
    pw("b2.expand", 24, 56, 144, repeat=2), dw("b2.dw", 144, 56),
    pw("b2.project", 144, 56, 24),
    dw("b3.dws2", 144, 56, 2), pw("b3.project0", 144, 28, 32),
    pw("b3.expand", 32, 28, 192, repeat=3), dw("b3.dw", 192, 28, repeat=2),
    pw("b3.project", 192, 28, 32, repeat=2),
    dw("b4.dws2", 192, 28, 2), pw("b4.project0", 192, 14, 64),
    pw("b4.expand", 64, 14, 384, repeat=4), dw("b4.dw", 384, 14, repeat=4),
    pw("b4.project", 384, 14, 64, repeat=3),
    pw("b5.project0", 384, 14, 96),
    pw("b5.expand", 96, 14, 576, repeat=3), dw("b5.dw", 576, 14, repeat=2),
    pw("b5.project", 576, 14, 96, repeat=2),
    dw("b6.dws2", 576, 14, 2), pw("b6.project0", 576, 7, 160),
    pw("b6.expand", 160, 7, 960, repeat=3), dw("b6.dw", 960, 7, repeat=3),
    pw("b6.project", 960, 7, 160, repeat=2),
    pw("b7.project", 960, 7, 320),
    pw("head", 320, 7, 1280),
    gap("gap", 1280, 7),
]

VGG16 = [
    conv("c1_1", 3, 224, 64, 3), conv("c1_2", 64, 224, 64, 3),
    maxpool("p1", 64, 224, 2, 2),
    conv("c2_1", 64, 112, 128, 3), conv("c2_2", 128, 112, 128, 3),
    maxpool("p2", 128, 112, 2, 2),
    conv("c3_1", 128, 56, 256, 3), conv("c3_2", 256, 56, 256, 3, repeat=2),
    maxpool("p3", 256, 56, 2, 2),
    conv("c4_1", 256, 28, 512, 3), conv("c4_2", 512, 28, 512, 3, repeat=2),
    maxpool("p4", 512, 28, 2, 2),
    conv("c5", 512, 14, 512, 3, repeat=3),
    maxpool("p5", 512, 14, 2, 2),
]


def up(name, c_in, hw, c_out):
    return Layer(name, "up", c_in, hw, hw, c_out, 2, 2, 0, 1, 1)


UNET = [
    conv("e1a", 3, 224, 64, 3), conv("e1b", 64, 224, 64, 3),
    maxpool("p1", 64, 224, 2, 2),
    conv("e2a", 64, 112, 128, 3), conv("e2b", 128, 112, 128, 3),
    maxpool("p2", 128, 112, 2, 2),
    conv("e3a", 128, 56, 256, 3), conv("e3b", 256, 56, 256, 3),
    maxpool("p3", 256, 56, 2, 2),
    conv("e4a", 256, 28, 512, 3), conv("e4b", 512, 28, 512, 3),
    maxpool("p4", 512, 28, 2, 2),
    conv("mid_a", 512, 14, 1024, 3), conv("mid_b", 1024, 14, 1024, 3),
    up("up4", 1024, 14, 512), conv("d4a", 1024, 28, 512, 3), conv("d4b", 512, 28, 512, 3),
    up("up3", 512, 28, 256), conv("d3a", 512, 56, 256, 3), conv("d3b", 256, 56, 256, 3),
    up("up2", 256, 56, 128), conv("d2a", 256, 112, 128, 3),
    conv("d2b", 128, 112, 128, 3),
    up("up1", 128, 112, 64), conv("d1a", 128, 224, 64, 3), conv("d1b", 64, 224, 64, 3),
    pw("out", 64, 224, 2),
]

RESNET20 = [
    conv("stem", 3, 32, 16, 3),
    conv("s1.3x3", 16, 32, 16, 3, repeat=6),
    conv("s2.3x3s2", 16, 32, 32, 3, 2),
    conv("s2.3x3", 32, 16, 32, 3, repeat=5),
    conv("s3.3x3s2", 32, 16, 64, 3, 2),
    conv("s3.3x3", 64, 8, 64, 3, repeat=5),
    gap("gap", 64, 8),
]

NETWORKS = {
    "resnet18": RESNET18, "resnet50": RESNET50, "mobilenet_v1": MOBILENET_V1,
    "mobilenet_v2": MOBILENET_V2, "vgg16": VGG16, "unet": UNET, "resnet20": RESNET20,
}
# Batch sizes: latency, and two training sizes (CIFAR-sized networks train larger).
BATCHES = {net: ((1, 32, 128) if net == "resnet20" else (1, 8, 32)) for net in NETWORKS}
QUICK_BATCHES = {net: ((32,) if net == "resnet20" else (1,)) for net in NETWORKS}
