"""Does splitting a trained supernet on one block's op (few-shot NAS) rank archs better than training it longer?

Few-shot NAS (Zhao et al., ICML 2021, arXiv 2006.06863) splits a one-shot supernet into
sub-supernets, one per op of a chosen block: each starts as a copy of the trained supernet and
is fine-tuned only on the paths that take its op there, so the weights of the other blocks no
longer have to serve every op of that block at once. An arch is then scored on its own
sub-supernet. From each given supernet this fine-tunes:

- ``split``: one copy per op of block ``--block``, ``--steps`` steps each, on the run's own
  path sampler with the paths that take another op there rejected;
- ``control``: one copy, not split, for as many steps as the split's copies together, so that
  what the split gains is not just more training;

each with the run's optimizer settings (SGD, momentum, weight decay off BN), lr cosine from
``--lr`` to 0 without warm-up, on augmented training batches. Every drawn arch is then scored
as the search scores it (BN recalibrated, top-1 on search-val) on the original supernet, on
its sub-supernet and on the control. Reports each way's Kendall tau against the mean of each
draw's stand-alone runs, per draw and pooled, per supernet and on average, and how well the
supernets agree with each other each way. The JSON holds the scores in `spos correlate`'s
shape under ``scores/NAME-WAY`` for `reference_length.py --supernet NAME FILE#scores/NAME-WAY`.

The fine-tuned copies are checkpointed in ``--cache`` every 100 steps and the scores written a
line per arch (a file per block, steps and lr), so a stop loses at most 100 steps or one arch:

    python benchmarks/few_shot_split.py --block 7 --steps 1000 --lr 0.02 \\
        --draw 10=benchmarks/results/cifar10-small/standalone-10archs-3seeds.jsonl \\
        --draw 20=benchmarks/results/cifar10-small/standalone-20archs-3seeds.jsonl \\
        --supernet nested-s3=runs/fresh/nested-s3/supernet.pt --cache runs/few-shot --out runs/few-shot.json
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Iterator

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from torch.nn import functional as F  # noqa: E402
from torch.utils.data import DataLoader, Dataset  # noqa: E402

from benchmarks.finetune_scoring import correlate_shape, fine_tuning_start, read_cache, tau_table  # noqa: E402
from benchmarks.scoring_splits import scoring_parser  # noqa: E402
from spos.arch import Arch  # noqa: E402
from spos.atomic import write_json_atomic  # noqa: E402
from spos.checkpoint import LoadedSupernet, load_checkpoint, load_supernet, save_atomic  # noqa: E402
from spos.cost import CostModel  # noqa: E402
from spos.data import derive_seed, set_epoch  # noqa: E402
from spos.evaluate import recalibrated_top1  # noqa: E402
from spos.sampling import SamplingError  # noqa: E402
from spos.samplers import PathSampler, make_sampler  # noqa: E402
from spos.supernet import Supernet  # noqa: E402
from spos.train import learning_rate, make_optimizer  # noqa: E402

WAYS = ("original", "split", "control")
SAVE_EVERY = 100


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = scoring_parser(__doc__.split("\n\n")[0], "folder of fine-tuned copies and scores (resumable)")
    p.add_argument("--block", type=int, required=True, help="the choice block whose op splits the supernet")
    p.add_argument("--steps", type=int, default=500, help="fine-tuning steps per sub-supernet")
    p.add_argument("--lr", type=float, default=0.02, help="fine-tuning learning rate (cosine to 0)")
    return p.parse_args(argv)


class TakingOp:
    """The paths of ``base`` whose block ``block`` takes op ``op``; the others are drawn again."""

    paths_per_step = 1

    def __init__(self, base: PathSampler, block: int, op: int, max_tries: int = 10_000) -> None:
        self.base, self.block, self.op, self.max_tries = base, block, op, max_tries

    def __call__(self) -> Arch:
        for _ in range(self.max_tries):
            arch = self.base()
            if arch.ops[self.block] == self.op:
                return arch
        raise SamplingError(f"{self.max_tries} paths drawn, none with op {self.op} in block {self.block}")

    def state_dict(self) -> dict[str, Any]:
        return self.base.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.base.load_state_dict(state)


def training_stream(dataset: Dataset, batch_size: int, seed: int, start: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Augmented batches from step ``start`` on: epoch e is a permutation drawn with (seed, e)
    and the augmentation draw of e, so a resumed run sees the batches it would have seen."""
    per_epoch = len(dataset) // batch_size
    if per_epoch < 1:
        raise ValueError(f"--batch-size {batch_size}: larger than the {len(dataset)} training images")
    epoch, skip = divmod(start, per_epoch)
    while True:
        set_epoch(dataset, epoch)
        order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(derive_seed(seed, epoch))).tolist()
        yield from DataLoader(dataset, batch_size=batch_size, sampler=order[skip * batch_size:per_epoch * batch_size],
                              drop_last=True)
        epoch, skip = epoch + 1, 0


def fine_tuned_copy(loaded: LoadedSupernet, sampler: PathSampler, dataset: Dataset, steps: int, lr: float,
                    batch_size: int, label: str, path: Path) -> Supernet:
    """A copy of ``loaded.supernet`` fine-tuned for ``steps`` steps on ``sampler``'s paths, resumed
    from and saved to ``path`` (every `SAVE_EVERY` steps; the finished copy stays there)."""
    supernet = copy.deepcopy(loaded.supernet).train()
    layout = torch.channels_last if loaded.config.channels_last else torch.contiguous_format
    supernet.to(memory_format=layout)
    recipe = dataclasses.replace(loaded.config.recipe, lr=lr, warmup_steps=0, schedule="cosine")
    optimizer = make_optimizer(supernet, recipe)
    start, seconds = 0, 0.0
    if path.exists():
        state = load_checkpoint(path, "fine-tuned copy")
        if state.get("steps") != steps or state.get("lr") != lr:
            raise ValueError(f"{path} was fine-tuned with {state.get('steps')} steps at lr {state.get('lr')}; "
                             f"expected {steps} at {lr}, or another --cache folder")
        supernet.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        sampler.load_state_dict(state["sampler"])
        start, seconds = state["step"], state["seconds"]
    began = time.perf_counter() - seconds
    batches = training_stream(dataset, batch_size, derive_seed(loaded.config.seed, label), start)
    for step in range(start, steps):
        images, labels = next(batches)
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(step, recipe, steps)
        torch.manual_seed(derive_seed(loaded.config.seed, label, step))  # the head's dropout
        loss = F.cross_entropy(supernet(images.to(memory_format=layout), sampler()), labels,
                               label_smoothing=recipe.label_smoothing)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if (step + 1) % SAVE_EVERY == 0 or step + 1 == steps:
            save_atomic({"model": supernet.state_dict(), "optimizer": optimizer.state_dict(),
                         "sampler": sampler.state_dict(), "step": step + 1, "steps": steps, "lr": lr,
                         "seconds": time.perf_counter() - began}, path)
            print(f"{label}: step {step + 1}/{steps}, loss {loss.item():.3f} ({time.perf_counter() - began:.0f} s)",
                  flush=True)
    return supernet.eval()


def split_and_control(name: str, loaded: LoadedSupernet, block: int, steps: int, lr: float, batch_size: int,
                      dataset: Dataset, folder: Path) -> tuple[dict[int, Supernet], Supernet, dict[str, float]]:
    """The sub-supernets of ``block``'s ops, the unsplit control of the same compute, and the
    minutes each copy's fine-tuning took."""
    space, cfg = loaded.space, loaded.config
    if not 0 <= block < len(space.blocks):
        raise ValueError(f"--block {block}: the space has choice blocks 0..{len(space.blocks) - 1}")
    ops = space.blocks[block].candidates
    folder.mkdir(parents=True, exist_ok=True)

    def sampler(label: str) -> PathSampler:
        return make_sampler(cfg.sampler, space, derive_seed(cfg.seed, label, "sampler") % 2**32)

    split, paths = {}, [folder / f"block{block}-op{op}.pt" for op in ops]
    for op, path in zip(ops, paths):
        label = f"{name} split op {op}"
        split[op] = fine_tuned_copy(loaded, TakingOp(sampler(label), block, op), dataset, steps, lr, batch_size, label,
                                    path)
    label, paths = f"{name} control", [*paths, folder / "control.pt"]
    control = fine_tuned_copy(loaded, sampler(label), dataset, steps * len(ops), lr, batch_size, label, paths[-1])
    minutes = {path.stem: load_checkpoint(path, "fine-tuned copy")["seconds"] / 60 for path in paths}
    return split, control, minutes


def score_ways(name: str, loaded: LoadedSupernet, split: dict[int, Supernet], control: Supernet, block: int,
               archs: list[Arch], batches, cache_path: Path) -> dict[str, dict[str, float]]:
    """``arch -> {way: top-1}``, scored where ``cache_path`` lacks them."""
    results = read_cache(cache_path, WAYS)
    layout = torch.channels_last if loaded.config.channels_last else torch.contiguous_format
    scored = batches.to(torch.device("cpu"), layout)
    nets = {"original": lambda arch: loaded.supernet, "split": lambda arch: split[arch.ops[block]],
            "control": lambda arch: control}
    start = time.perf_counter()
    for i, arch in enumerate(archs, 1):
        have = results.get(str(arch), {})
        record = {way: recalibrated_top1(net(arch).subnet(arch).to(memory_format=layout), scored)
                  for way, net in nets.items() if way not in have}
        if record:
            with cache_path.open("a") as f:  # a line per arch: a stop loses at most the arch being scored
                f.write(json.dumps({"arch": str(arch), **record}) + "\n")
            results.setdefault(str(arch), {}).update(record)
            print(f"{name}: {i}/{len(archs)} archs scored ({time.perf_counter() - start:.0f} s)", flush=True)
    return results


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    drawn, splits, batches = fine_tuning_start(a)
    archs = drawn.archs
    costs = CostModel(drawn.first.space)
    results, minutes = {}, {}
    for name, path in drawn.supernets:
        loaded = load_supernet(path)
        folder = a.cache / name
        split, control, minutes[name] = split_and_control(name, loaded, a.block, a.steps, a.lr, a.batch_size,
                                                          splits.train, folder)
        # The split's scores depend on the block, both copies' on steps and lr: one file per setting.
        scores_path = folder / f"scores-block{a.block}-steps{a.steps}-lr{a.lr}.jsonl"
        results[name] = score_ways(name, loaded, split, control, a.block, archs, batches, scores_path)
    taus, agreement = tau_table(results, WAYS, drawn.truths, archs, "way")
    mean_top1 = {way: {name: statistics.mean(r[str(x)][way] for x in archs) for name, r in results.items()} for way in WAYS}
    print("mean top-1 of the drawn archs: " + "; ".join(
        f"{way} {100 * statistics.mean(by_name.values()):.1f}%" for way, by_name in mean_top1.items()))
    if a.out:
        write_json_atomic(a.out, {
            "draws": dict(drawn.draws), "seed": a.seed, "block": a.block, "steps": a.steps, "lr": a.lr,
            "supernets": dict(drawn.supernets), "fine_tune_minutes": minutes,
            "kendall_tau": taus, "supernet_agreement_tau": agreement, "mean_top1": mean_top1,
            "mean_tau": {g: {w: statistics.mean(v.values()) for w, v in by_way.items()} for g, by_way in taus.items()},
            "scores": {f"{name}-{way}": correlate_shape(results[name], way, costs, archs)
                       for name in results for way in WAYS}})
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (OSError, ValueError, SamplingError) as error:  # a missing journal or supernet, a foreign cache: one line
        sys.exit(f"few_shot_split.py: {error}")
