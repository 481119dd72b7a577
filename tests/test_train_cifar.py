"""A short supernet run on the CIFAR-10 subset lowers the training loss."""

from __future__ import annotations

import json

import pytest
import torch
import yaml

from spos.config import load_train_config
from spos.train import train_supernet
from tests.conftest import CIFAR_SMALL, tiny_space_dict


@pytest.mark.skipif(not CIFAR_SMALL.is_dir(), reason=f"{CIFAR_SMALL} absent")
def test_short_cifar10_small_run_lowers_the_loss(tmp_path):
    (tmp_path / "space.yaml").write_text(yaml.safe_dump(tiny_space_dict(input_size=32)))
    config = {
        "space": "space.yaml",
        "data": {"dataset": "imagefolder", "root": str(CIFAR_SMALL), "search_val_per_class": 10, "workers": 0},
        "recipe": {"batch_size": 64, "steps": 60, "lr": 0.1, "warmup_steps": 5, "schedule": "cosine"},
        "sampler": {"name": "uniform"},
        "eval": {"paths": 0},
        "log_every": 10,
    }
    (tmp_path / "train.yaml").write_text(yaml.safe_dump(config))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        train_supernet(load_train_config(tmp_path / "train.yaml"), tmp_path / "run")
    finally:
        torch.set_num_threads(threads)
    losses = [json.loads(line)["loss"] for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert len(losses) == 6
    assert sum(losses[-2:]) / 2 < sum(losses[:2]) / 2 - 0.03, losses
