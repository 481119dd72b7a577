"""Shared fixtures: the shipped spaces, small and seeded."""

from __future__ import annotations

import os
from pathlib import Path

# OpenMP's idle threads sleep instead of spinning (spos/cpu_threads.py says why spinning hurts).
# Beside two training processes on a 2-core machine, tests/test_train.py and test_supernet.py took
# 199 s with torch's spinning threads and 44 s with this; on the quiet machine 34 s either way.
# The tests' many short loops are not worth governing. It must be set before torch loads.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pytest  # noqa: E402

from spos.space import SearchSpace  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SPACES_DIR = ROOT / "configs" / "spaces"
SPACE_FILES = sorted(SPACES_DIR.glob("*.yaml"))
# The data shared beside a checkout (../shared/data). SPOS_SHARED_DATA points elsewhere, e.g. at
# a missing folder to check that every test reading it skips cleanly in a plain clone.
SHARED_DATA = Path(os.environ.get("SPOS_SHARED_DATA") or ROOT.parent / "shared" / "data")
CIFAR_SMALL = SHARED_DATA / "cifar10-small"


@pytest.fixture(params=[p.stem for p in SPACE_FILES])
def any_space(request) -> SearchSpace:
    return SearchSpace.from_yaml(SPACES_DIR / f"{request.param}.yaml")


@pytest.fixture
def cifar_space() -> SearchSpace:
    return SearchSpace.from_yaml(SPACES_DIR / "shufflenetv2-cifar.yaml")


@pytest.fixture
def proxyless_cifar_space() -> SearchSpace:
    return SearchSpace.from_yaml(SPACES_DIR / "proxyless-cifar.yaml")


def tiny_space_dict(**overrides) -> dict:
    """A few-channel ShuffleNetV2-style space: fast enough for training tests."""
    data = {
        "name": "tiny",
        "input_size": 16,
        "in_channels": 3,
        "num_classes": 10,
        "activation": "relu",
        "stem": {"channels": 8, "kernel": 3, "stride": 1},
        "stages": [{"channels": 16, "repeats": 2, "stride": 2}, {"channels": 32, "repeats": 2, "stride": 2}],
        "ops": ["choice_3", "choice_5", "choice_7", "choice_x"],
        "channel_multipliers": [0.5, 1.0, 1.5],
        "default_multiplier": 1.0,
        "head": {"channels": 64, "dropout": 0.0, "bias": False},
    }
    data.update(overrides)
    return data


@pytest.fixture
def tiny_space() -> SearchSpace:
    return SearchSpace.from_dict(tiny_space_dict(), "tiny")


@pytest.fixture
def one_torch_thread():
    """Tiny convolutions run faster on one thread, above all on a shared CPU (restored after)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
