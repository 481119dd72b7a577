"""Controlled supernet-training experiments on real images: one change at a time.

Trains a supernet of SPACE on an ImageFolder (default: ../shared/data/cifar10-small)
with a plain SGD loop whose every knob is a flag, and logs, as JSON lines, the training
loss / top-1 per window and, every --eval-every steps, the search-val top-1 of 5 fixed
random paths after BN recalibration (the score the search uses). Images seen =
step x batch, to compare with a reference learning curve per image seen.

The defaults are the reference settings of the public SPOS CIFAR-10 reproduction
(ShunLu91/Single-Path-One-Shot-NAS: BN affine=False, batch 96, SGD lr 0.025, momentum
0.9, weight decay 3e-4, no label smoothing, uniform paths over blocks only). Each
flag changes one thing:

    python benchmarks/supernet_fidelity.py --out runs/fid/ref.jsonl                    # reference settings
    python benchmarks/supernet_fidelity.py --channels random --out runs/fid/ch.jsonl   # + channel search
    python benchmarks/supernet_fidelity.py --space configs/spaces/shufflenetv2-cifar-small.yaml \
        --batch 64 --steps 600 --eval-every 300 --lr 0.1 --warmup 100 --out runs/fid/small-lr.jsonl

    python benchmarks/supernet_fidelity.py --table runs/fid/*.jsonl                    # Markdown table
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from torch import nn  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402

from spos.arch import Arch  # noqa: E402
from spos.bn import recalibrate_bn, top1_accuracy  # noqa: E402
from spos.config import SamplerConfig  # noqa: E402
from spos.data import DataConfig, fixed_batches, load_data, set_epoch  # noqa: E402
from spos.samplers import make_sampler  # noqa: E402
from spos.sampling import sample_uniform  # noqa: E402
from spos.space import SearchSpace  # noqa: E402
from spos.supernet import Supernet  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--space", default=str(ROOT / "configs/spaces/shufflenetv2-cifar.yaml"))
    p.add_argument("--data", default=str(ROOT.parent / "shared/data/cifar10-small"), help="ImageFolder root")
    p.add_argument("--steps", type=int, default=1050)
    p.add_argument("--batch", type=int, default=96)
    p.add_argument("--lr", type=float, default=0.025)
    p.add_argument("--warmup", type=int, default=0, help="linear warm-up steps")
    p.add_argument("--cosine", action="store_true", help="cosine decay to 0 over --steps (else constant)")
    p.add_argument("--wd", type=float, default=3e-4, help="weight decay on conv / linear weights")
    p.add_argument("--bn-wd", action="store_true", help="weight decay on BatchNorm parameters and biases too")
    p.add_argument("--ls", type=float, default=0.0, help="label smoothing")
    p.add_argument("--affine", action="store_true", help="BatchNorm with learned scale / shift")
    p.add_argument("--init", choices=("independent", "nested"), default="independent",
                   help="nested: a block's candidates start from the same function (spos.nested_init)")
    p.add_argument("--channels-last", action="store_true", help="NHWC memory format (faster depthwise convs on CPU)")
    p.add_argument("--channels", choices=("fixed", "random"), default="fixed", help="channel choices per path")
    p.add_argument("--ops", choices=("random", "fixed"), default="random", help="op choices per path")
    p.add_argument("--sampler", choices=("uniform", "uniform_constraint"), default="uniform",
                   help="uniform_constraint: the paper's FLOPs bins (10, 1st..99th percentile; needs --ops random)")
    p.add_argument("--no-augment", action="store_true", help="no random crop / flip on training images")
    p.add_argument("--no-normalize", action="store_true", help="feed [0, 1] pixels (no per-channel mean / std)")
    p.add_argument("--eval-every", type=int, default=350)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                   help="where to train: auto = CUDA when available (the paper-size space needs a GPU)")
    p.add_argument("--recal-batches", type=int, default=8, help="BN recalibration batches (of 128) per evaluated path")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", help="JSON-lines log")
    p.add_argument("--table", nargs="+", metavar="LOG", help="print a Markdown table of finished logs and exit")
    return p.parse_args(argv)


class Paths:
    """Training and evaluation paths under the experiment's op / channel policy."""

    def __init__(self, space: SearchSpace, ops: str, channels: str, seed: int, sampler: str = "uniform") -> None:
        self.space, self.ops, self.channels = space, ops, channels
        self.rng = random.Random(seed)
        self.fixed = sample_uniform(space, random.Random(123))
        # the training stream; evaluation paths (draw(rng)) stay uniform so runs score the same archs
        self.constraint = None
        if sampler == "uniform_constraint":
            if ops != "random":
                raise SystemExit("supernet_fidelity.py: --sampler uniform_constraint needs --ops random")
            self.constraint = make_sampler(SamplerConfig(name="uniform_constraint", metric="flops"), space, seed)

    def draw(self, rng: random.Random | None = None) -> Arch:
        if rng is None and self.constraint is not None:
            arch = self.constraint()
        else:
            arch = sample_uniform(self.space, rng or self.rng) if self.ops == "random" else self.fixed
        return Arch(arch.ops).validated(self.space) if self.channels == "fixed" else arch


def run(a: argparse.Namespace) -> None:
    torch.set_num_threads(a.threads)
    device = torch.device("cuda" if a.device == "cuda" or (a.device == "auto" and torch.cuda.is_available()) else "cpu")
    space = SearchSpace.from_yaml(a.space)
    torch.manual_seed(a.seed)
    net = Supernet(space, bn_affine=a.affine, init=a.init).to(device)
    if a.channels_last:
        net = net.to(memory_format=torch.channels_last)
    splits = load_data(DataConfig(dataset="imagefolder", root=Path(a.data).resolve(), input_size=space.input_size,
                                  in_channels=space.in_channels, augment=not a.no_augment), seed=a.seed)
    if a.no_normalize:  # every split reads through an ImageDataset (under a Subset for train / search-val)
        for split in (splits.train, splits.search_val, splits.test):
            images = getattr(split, "dataset", split)
            images.mean, images.std = torch.zeros_like(images.mean), torch.ones_like(images.std)
    paths = Paths(space, a.ops, a.channels, a.seed, a.sampler)
    eval_rng = random.Random(999)
    eval_archs = [paths.draw(eval_rng) for _ in range(5)]
    recal = [x.to(device) for x, _ in fixed_batches(splits.train, a.recal_batches, 128, 0)]
    val = [(x.to(device), y.to(device)) for x, y in DataLoader(splits.search_val, batch_size=250)]
    decay = [q for q in net.parameters() if q.ndim > 1 or a.bn_wd]
    no_decay = [q for q in net.parameters() if q.ndim <= 1 and not a.bn_wd]
    opt = torch.optim.SGD([{"params": decay, "weight_decay": a.wd}, {"params": no_decay, "weight_decay": 0.0}],
                          lr=a.lr, momentum=0.9)
    criterion = nn.CrossEntropyLoss(label_smoothing=a.ls)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    log = open(a.out, "w")
    print(json.dumps({"settings": vars(a), "device": str(device)}), file=log, flush=True)
    step, epoch, started = 0, 0, time.time()
    window = [0.0, 0.0, 0]
    while step < a.steps:
        set_epoch(splits.train, epoch)
        order = torch.Generator().manual_seed(a.seed * 1000 + epoch)
        for x, y in DataLoader(splits.train, batch_size=a.batch, shuffle=True, drop_last=True, generator=order):
            lr = a.lr * min(1.0, (step + 1) / a.warmup) if a.warmup else a.lr
            if a.cosine:
                lr *= 0.5 * (1 + math.cos(math.pi * step / a.steps))
            for group in opt.param_groups:
                group["lr"] = lr
            opt.zero_grad(set_to_none=True)
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            if a.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            logits = net(x, paths.draw())
            loss = criterion(logits, y)
            loss.backward()
            opt.step()
            step += 1
            window[0] += loss.item()
            window[1] += (logits.argmax(1) == y).float().mean().item()
            window[2] += 1
            if step % 50 == 0 or step == a.steps:
                record = {"step": step, "images": step * a.batch, "loss": window[0] / window[2],
                          "top1": window[1] / window[2], "s": round(time.time() - started, 1)}
                window = [0.0, 0.0, 0]
                if step % a.eval_every == 0 or step == a.steps:
                    scores = []
                    for arch in eval_archs:
                        sub = net.subnet(arch)
                        recalibrate_bn(sub, recal)
                        scores.append(top1_accuracy(sub, val))
                    net.train()
                    record["paths_top1"] = scores
                    record["mean_paths_top1"] = sum(scores) / len(scores)
                print(json.dumps(record), file=log, flush=True)
            if step >= a.steps:
                break
        epoch += 1


def table(logs: list[str]) -> None:
    print("| log | change | images seen | train loss | random paths top-1 (mean, min..max) | wall s |")
    print("|---|---|---:|---:|---|---:|")
    defaults = vars(parse_args([]))
    for name in logs:
        lines = [json.loads(line) for line in Path(name).read_text().splitlines() if line.strip()]
        settings = lines[0].get("settings", {})
        change = ", ".join(f"{k}={v}" for k, v in settings.items()
                           if k not in ("out", "table", "threads", "data", "channels_last", "device") and v != defaults.get(k)) or "reference"
        for r in lines[1:]:
            if "mean_paths_top1" in r:
                paths = r["paths_top1"]
                print(f"| {Path(name).stem} | {change} | {r['images']} | {r['loss']:.3f} | "
                      f"{100 * r['mean_paths_top1']:.1f}% ({100 * min(paths):.1f}..{100 * max(paths):.1f}) | {r['s']:.0f} |")


if __name__ == "__main__":
    args = parse_args()
    if args.table:
        table(args.table)
    elif not args.out:
        sys.exit("supernet_fidelity.py: --out LOG is required (or --table LOG ...)")
    else:
        run(args)
