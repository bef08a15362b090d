"""ResNet-20 on CIFAR-10 in PyTorch with fastconv's training recipe: the reference run
that says whether a test accuracy comes from the recipe and the data or from fastconv
(docs/results.md, "ResNet-20").

    PYTHONPATH=. python bench/resnet20_recipe_torch.py --data cifar-10-python.tar.gz \
        [--epochs 10] [--label-smoothing 0.1] [--bn-momentum 0.9] [--nesterov]

The same network as fastconv.applications.resnet20 (3x3 convolutions without bias,
BatchNormalization with epsilon 1e-3, 1x1 projection shortcuts, He normal
initialization -- truncated at two standard deviations, as Keras's), the same data
(fastconv's CIFAR-10 loader, pixels / 255), the same augmentation (fastconv's pad-4
crop and flip, drawn anew each epoch) and the same optimizer: SGD with momentum 0.9,
learning rate 0.1 on a per-epoch cosine schedule, decoupled weight decay
(w -= lr * wd * w before each step, as Keras 3 and fastconv apply it), batch 128.
One difference: PyTorch's stride-2 3x3 convolutions pad one pixel on each side where
Keras's "same" pads 0 above and 1 below.  Prints one line per epoch.
"""
import argparse
import math
import time

import numpy as np

from fastconv import _augment, datasets
from fastconv._cli_io import load_cifar


def build(torch, bn_momentum):
    nn = torch.nn

    def conv_bn(cin, cout, k, s, relu):
        conv = nn.Conv2d(cin, cout, k, s, k // 2, bias=False)
        std = math.sqrt(2.0 / (cin * k * k))
        nn.init.trunc_normal_(conv.weight, std=std, a=-2 * std, b=2 * std)
        layers = [conv, nn.BatchNorm2d(cout, eps=1e-3, momentum=1 - bn_momentum)]
        return nn.Sequential(*layers, nn.ReLU()) if relu else nn.Sequential(*layers)

    class Basic(nn.Module):
        def __init__(self, cin, cout, stride):
            super().__init__()
            self.body = nn.Sequential(conv_bn(cin, cout, 3, stride, True),
                                      conv_bn(cout, cout, 3, 1, False))
            self.proj = (conv_bn(cin, cout, 1, stride, False)
                         if stride != 1 or cin != cout else nn.Identity())

        def forward(self, x):
            return torch.relu(self.proj(x) + self.body(x))

    torch.manual_seed(0)
    layers, cin = [conv_bn(3, 16, 3, 1, True)], 16
    for stage, cout in enumerate((16, 32, 64)):
        for block in range(3):
            layers.append(Basic(cin, cout, 2 if stage and not block else 1))
            cin = cout
    dense = nn.Linear(64, 10)
    std = math.sqrt(2.0 / 64)
    nn.init.trunc_normal_(dense.weight, std=std, a=-2 * std, b=2 * std)
    nn.init.zeros_(dense.bias)
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), dense)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", required=True)
    p.add_argument("--epochs", type=int, default=40)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=0.1)
    p.add_argument("--weight-decay", type=float, default=5e-3)
    p.add_argument("--label-smoothing", type=float, default=0.0)
    p.add_argument("--bn-momentum", type=float, default=0.99)
    p.add_argument("--nesterov", action="store_true")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--limit", type=int, default=0)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)

    import torch
    torch.set_num_threads(args.threads)
    ((x_tr, y_tr), (x_te, y_te)), source = load_cifar(args.data, False, print)
    x_tr, x_te = datasets.scale_images(x_tr), datasets.scale_images(x_te)
    y_tr = np.asarray(y_tr, np.int64).reshape(-1)
    y_te = np.asarray(y_te, np.int64).reshape(-1)
    if args.limit:
        x_tr, y_tr = x_tr[:args.limit], y_tr[:args.limit]
    model = build(torch, args.bn_momentum).to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9,
                          nesterov=args.nesterov)
    loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=args.label_smoothing)
    rng = np.random.default_rng(args.seed)
    test = torch.from_numpy(x_te).permute(0, 3, 1, 2)
    print(f"torch {torch.__version__}: resnet20 on {source}, {vars(args)}", flush=True)
    for epoch in range(args.epochs):
        lr = args.lr * 0.5 * (1 + math.cos(math.pi * epoch / args.epochs))
        for group in opt.param_groups:
            group["lr"] = lr
        x = _augment.random_shift(_augment.random_flip(x_tr, rng=rng), 4, rng=rng)
        order = rng.permutation(len(x))
        model.train()
        t0, seen, loss_sum, correct = time.perf_counter(), 0, 0.0, 0
        for i in range(0, len(x), args.batch_size):
            idx = order[i:i + args.batch_size]
            xb = torch.from_numpy(x[idx]).permute(0, 3, 1, 2)
            yb = torch.from_numpy(y_tr[idx])
            with torch.no_grad():   # decoupled weight decay, before the step
                for param in model.parameters():
                    param.mul_(1 - lr * args.weight_decay)
            out = model(xb)
            loss = loss_fn(out, yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            loss_sum += loss.item() * len(idx)
            correct += int((out.argmax(1) == yb).sum())
            seen += len(idx)
        dt = time.perf_counter() - t0
        model.eval()
        with torch.no_grad():
            logits = torch.cat([model(test[j:j + 500]) for j in range(0, len(test), 500)])
            test_loss = float(torch.nn.functional.cross_entropy(
                logits, torch.from_numpy(y_te)))
            test_acc = float((logits.argmax(1).numpy() == y_te).mean())
        print(f"epoch {epoch + 1:>2}/{args.epochs}  loss {loss_sum / seen:.4f}  "
              f"acc {correct / seen:.4f}  test_loss {test_loss:.4f}  "
              f"test_acc {test_acc:.4f}  lr {lr:.2g}  {dt:.1f} s", flush=True)


if __name__ == "__main__":
    main()
