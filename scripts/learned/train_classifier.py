"""Trains the RDIC analysis model: a land-cover classifier on EuroSAT RGB (10 classes).

The network is built for epsilon-LRP (Bach et al. 2015) and for tiles of any size:

    x / 255 -> [conv, BatchNorm, ReLU] x 7 (three of them stride 2) -> global average pool
            -> linear (no bias)

BatchNorm is folded into the convolutions at export, so the shipped network is only
convolutions (with biases), ReLUs, one average and one matrix: exactly the layers the
epsilon rule is defined for. (A bias-free network without normalisation would conserve
relevance exactly, but trained to 47 % after 400 steps against 80 % here.) Global
average pooling makes it fully convolutional: a 256x256 tile is classified as a whole
and its relevance map has the tile's size.

Usage (seeded; resumes from --checkpoint if present; exports TorchScript and a card):

    /usr/bin/python3 scripts/learned/train_classifier.py --epochs 14 \
        --checkpoint runs/classifier/ckpt.pt --log runs/classifier/log.jsonl \
        --export models/rdic-classifier-rgb8
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import datasets  # noqa: E402
from train_multirate import sha256  # noqa: E402

CLASSES = ["AnnualCrop", "Forest", "HerbaceousVegetation", "Highway", "Industrial",
           "Pasture", "PermanentCrop", "River", "Residential", "SeaLake"]
CLASSES.sort()

# (in, out, kernel, stride) of every convolution; each is followed by ReLU.
LAYERS = [(3, 32, 5, 2), (32, 64, 3, 1), (64, 64, 3, 2), (64, 128, 3, 1),
          (128, 128, 3, 2), (128, 128, 3, 1), (128, 128, 3, 1)]


class LandCoverClassifier(nn.Module):
    def __init__(self, classes: int = len(CLASSES), batch_norm: bool = True):
        super().__init__()
        self.features = nn.Sequential()
        for cin, cout, k, s in LAYERS:
            self.features.append(nn.Conv2d(cin, cout, k, stride=s, padding=k // 2,
                                           bias=not batch_norm))
            if batch_norm:
                self.features.append(nn.BatchNorm2d(cout))
            self.features.append(nn.ReLU())
        self.classifier = nn.Linear(LAYERS[-1][1], classes, bias=False)

    @torch.no_grad()
    def folded(self) -> "LandCoverClassifier":
        """The same function with every BatchNorm folded into the conv before it."""
        out = LandCoverClassifier(self.classifier.out_features, batch_norm=False)
        if not any(isinstance(m, nn.BatchNorm2d) for m in self.features):
            out.load_state_dict(self.state_dict())  # trained without BatchNorm already
            return out.eval()
        convs = [m for m in self.features if isinstance(m, nn.Conv2d)]
        norms = [m for m in self.features if isinstance(m, nn.BatchNorm2d)]
        targets = [m for m in out.features if isinstance(m, nn.Conv2d)]
        for conv, norm, target in zip(convs, norms, targets):
            scale = norm.weight / torch.sqrt(norm.running_var + norm.eps)
            target.weight.copy_(conv.weight * scale.view(-1, 1, 1, 1))
            target.bias.copy_(norm.bias - norm.running_mean * scale)
        out.classifier.weight.copy_(self.classifier.weight)
        return out.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: raw 8-bit samples as float32 (B, 3, H, W) -> logits (B, classes)."""
        h = self.features(x * (1.0 / 255.0))
        return self.classifier(h.mean(dim=(2, 3)))


class MaxPoolClassifier(nn.Module):
    """A second land-cover classifier of another design, for benchmarks only (issue 19:
    a gain measured with one network must hold for another): three stages of two
    conv-BatchNorm-ReLU and a 2x2 max pool, global average pool, dropout, linear. Not
    built for LRP; exported as it is (BatchNorm kept, eval mode)."""

    def __init__(self, classes: int = len(CLASSES)):
        super().__init__()
        layers, cin = [], 3
        for cout in (32, 64, 128):
            for _ in range(2):
                layers += [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout),
                           nn.ReLU()]
                cin = cout
            layers.append(nn.MaxPool2d(2))
        self.features = nn.Sequential(*layers)
        self.dropout = nn.Dropout(0.3)
        self.classifier = nn.Linear(cin, classes)

    def folded(self) -> "MaxPoolClassifier":
        return self.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.features(x * (1.0 / 255.0))
        return self.classifier(self.dropout(h.mean(dim=(2, 3))))


def load_split(data: str, split: str):
    ds = datasets.EuroSatRgb(data, split)
    images = np.stack([ds.raw(i) for i in range(len(ds))])
    labels = np.array([CLASSES.index(cls) for cls, _ in ds.rows], dtype=np.int64)
    return images, labels


def augment_batch(images: np.ndarray, rng: np.random.Generator, jpeg_share: float = 0.0,
                  jpeg_qualities: tuple = (30, 100)) -> np.ndarray:
    """Flips and turns; with probability `jpeg_share` each image is also JPEG-coded at a
    quality drawn uniformly from `jpeg_qualities`, so that the classifier (and its
    relevance) holds up on the coarsely coded background RDIC produces."""
    out = np.empty_like(images)
    for i, img in enumerate(images):
        if rng.random() < 0.5:
            img = img[:, :, ::-1]
        if rng.random() < 0.5:
            img = img[:, ::-1, :]
        img = np.rot90(img, int(rng.integers(0, 4)), axes=(1, 2))
        if jpeg_share > 0 and rng.random() < jpeg_share:
            img = datasets.jpeg_round_trip(img, int(rng.integers(jpeg_qualities[0], jpeg_qualities[1] + 1)))
        out[i] = img
    return out


@torch.no_grad()
def accuracy(model, images, labels, batch=256):
    model.eval()
    correct = 0
    for start in range(0, len(images), batch):
        x = torch.from_numpy(images[start:start + batch].astype(np.float32))
        correct += int((model(x).argmax(1).numpy() == labels[start:start + batch]).sum())
    model.train()
    return correct / len(images)


def export(model, args, out_dir, epoch, accuracies):
    os.makedirs(out_dir, exist_ok=True)
    model = model.folded()
    scripted = torch.jit.script(model)
    path = os.path.join(out_dir, "classifier.pt")
    scripted.save(path)
    if isinstance(model, MaxPoolClassifier):
        card = {"id": os.path.basename(os.path.normpath(out_dir)),
                "role": "benchmark only: a second EuroSAT land-cover classifier of another "
                        "architecture (scripts/bench_rdic.py); no codec uses it",
                "classes": CLASSES,
                "architecture": "3 x (2 x conv3x3-BN-ReLU, maxpool 2), GAP, dropout 0.3, linear",
                "input": "raw 8-bit RGB as float32 (B, 3, H, W), H, W multiples of 8",
                "data": {"train": "EuroSAT RGB train split", "augmentation": "flips and "
                         "90-degree turns only (a user's ordinary model, not compression-aware)"},
                "training": {"epochs": epoch, "batch_size": args.batch_size, "lr": args.lr,
                             "seed": args.seed, "threads": args.threads},
                "accuracy": accuracies, "files": {"classifier.pt": sha256(path)},
                "software": {"torch": torch.__version__, "python": platform.python_version()}}
        with open(os.path.join(out_dir, "card.json"), "w", encoding="utf-8") as f:
            json.dump(card, f, indent=1)
        return card
    card = {
        "id": os.path.basename(os.path.normpath(out_dir)),
        "codec": "RDIC",
        "role": "analysis model: land-cover classifier whose epsilon-LRP relevance selects "
                "the regions coded at high JPEG quality",
        "classes": CLASSES,
        "architecture": {
            "layers": [{"kernel": k, "in": cin, "out": cout, "stride": s, "padding": k // 2,
                        "bias": True, "activation": "ReLU"} for cin, cout, k, s in LAYERS],
            "head": "global average pool, linear 128 -> 10, no bias",
            "input": "raw 8-bit RGB as float32 (B, 3, H, W), any H, W >= 1; scaled by 1/255 inside",
            "input_scale": 1.0 / 255.0,
            "parameter_names": "features.<2i>.weight / .bias for conv i, classifier.weight",
            "parameters": sum(p.numel() for p in model.parameters()),
            "training_form": "each conv followed by BatchNorm, folded into the conv's weight "
                             "and bias at export (features.N = conv, ReLU pairs)",
        },
        "data": {"train": "EuroSAT RGB train split (eurosat_rgb_splits.csv, 18,900 images)",
                 "model_selection": "best valid-split accuracy",
                 "augmentation": "flips and 90-degree turns" + (
                     f"; JPEG round trip (PIL, 4:2:0) at a uniform quality "
                     f"{args.jpeg_quality[0]}..{args.jpeg_quality[1]} for a share "
                     f"{args.jpeg_share} of the images" if args.jpeg_share > 0 else ""),
                 "initialised_from": args.init_from},
        "training": {"epochs": epoch, "batch_size": args.batch_size, "optimizer": "AdamW",
                     "lr": args.lr, "schedule": "one-cycle cosine", "weight_decay": args.weight_decay,
                     "seed": args.seed, "threads": args.threads},
        "accuracy": accuracies,
        "files": {"classifier.pt": sha256(path)},
        "software": {"torch": torch.__version__, "python": platform.python_version()},
    }
    with open(os.path.join(out_dir, "card.json"), "w", encoding="utf-8") as f:
        json.dump(card, f, indent=1)
    return card


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=datasets.DEFAULT_DATA)
    p.add_argument("--epochs", type=int, default=14)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--weight-decay", type=float, default=1e-4)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--checkpoint", default=None)
    p.add_argument("--log", default=None)
    p.add_argument("--export", default=None, metavar="DIR")
    p.add_argument("--jpeg-share", type=float, default=0.0,
                   help="share of training images JPEG-coded (compression augmentation)")
    p.add_argument("--jpeg-quality", type=int, nargs=2, default=(30, 100), metavar=("MIN", "MAX"))
    p.add_argument("--architecture", choices=("lrp", "maxpool"), default="lrp",
                   help="lrp: RDIC's analysis model; maxpool: the benchmark's second classifier")
    p.add_argument("--init-from", default=None, metavar="DIR",
                   help="fine-tune a shipped classifier (lrp: its folded weights, trained "
                        "without BatchNorm; maxpool: the benchmark's export, with its BatchNorm)")
    args = p.parse_args(argv)

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = np.random.Generator(np.random.PCG64(args.seed))
    t0 = time.time()
    train_x, train_y = load_split(args.data, "train")
    valid_x, valid_y = load_split(args.data, "valid")
    test_x, test_y = load_split(args.data, "test")
    print(f"loaded {len(train_x)}/{len(valid_x)}/{len(test_x)} images in {time.time() - t0:.0f} s",
          flush=True)

    if args.init_from and args.architecture == "maxpool":
        # The benchmark's second classifier is exported with its BatchNorm: same layout.
        model = MaxPoolClassifier()
        model.load_state_dict(torch.jit.load(os.path.join(args.init_from, "classifier.pt")).state_dict())
    elif args.init_from:
        # The shipped network is already folded: fine-tune it as it is, without BatchNorm.
        model = LandCoverClassifier(batch_norm=False)
        shipped = torch.jit.load(os.path.join(args.init_from, "classifier.pt"))
        model.load_state_dict(shipped.state_dict())
    elif args.architecture == "maxpool":
        model = MaxPoolClassifier()
    else:
        model = LandCoverClassifier()
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    steps_per_epoch = len(train_x) // args.batch_size
    total = steps_per_epoch * args.epochs
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, total_steps=total,
                                                pct_start=0.15)
    epoch, best, best_state = 0, -1.0, None
    if args.checkpoint and os.path.exists(args.checkpoint):
        ck = torch.load(args.checkpoint)
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["opt"])
        sched.load_state_dict(ck["sched"])
        rng.bit_generator.state = ck["rng"]
        torch.set_rng_state(ck["torch_rng"])
        epoch, best, best_state = ck["epoch"], ck["best"], ck["best_state"]
        print(f"resumed at epoch {epoch}", flush=True)

    stop = {"now": False}
    signal.signal(signal.SIGTERM, lambda *_: stop.update(now=True))
    while epoch < args.epochs and not stop["now"]:
        order = rng.permutation(len(train_x))
        t_epoch, loss_sum = time.time(), 0.0
        for step in range(steps_per_epoch):
            idx = order[step * args.batch_size:(step + 1) * args.batch_size]
            x = torch.from_numpy(augment_batch(train_x[idx], rng, args.jpeg_share,
                                               tuple(args.jpeg_quality)).astype(np.float32))
            y = torch.from_numpy(train_y[idx])
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            loss_sum += float(loss)
        epoch += 1
        valid_acc = accuracy(model, valid_x, valid_y)
        if valid_acc > best:
            best, best_state = valid_acc, {k: v.clone() for k, v in model.state_dict().items()}
        record = {"epoch": epoch, "loss": loss_sum / steps_per_epoch, "valid_acc": valid_acc,
                  "seconds": time.time() - t_epoch}
        print(json.dumps(record), flush=True)
        if args.log:
            with open(args.log, "a", encoding="utf-8") as f:
                f.write(json.dumps(record) + "\n")
        if args.checkpoint:
            os.makedirs(os.path.dirname(os.path.abspath(args.checkpoint)), exist_ok=True)
            tmp = args.checkpoint + ".tmp"
            torch.save({"model": model.state_dict(), "opt": opt.state_dict(),
                        "sched": sched.state_dict(), "rng": rng.bit_generator.state,
                        "torch_rng": torch.get_rng_state(), "epoch": epoch, "best": best,
                        "best_state": best_state}, tmp)
            os.replace(tmp, args.checkpoint)

    if args.export and best_state is not None:
        model.load_state_dict(best_state)
        folded = model.folded()
        acc = {"train": accuracy(model, train_x, train_y), "valid": accuracy(model, valid_x, valid_y),
               "test": accuracy(model, test_x, test_y),
               "test_folded": accuracy(folded, test_x, test_y),
               "note": "EuroSAT RGB splits of eurosat_rgb_splits.csv; test = its 3,050-image test split"}
        card = export(model, args, args.export, epoch, acc)
        print(json.dumps(card["accuracy"]), flush=True)


if __name__ == "__main__":
    main()
