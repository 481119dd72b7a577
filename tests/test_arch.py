"""Arch strings, JSON round trips and validation against a space."""

from __future__ import annotations

import json
import random

import pytest

from spos.arch import Arch
from spos.sampling import sample_uniform
from spos.space import SearchSpace
from tests.conftest import tiny_space_dict

PUBLISHED = "2,1,0,1,2,0,2,0,2,0,2,3,0,0,0,0,3,2,3,3"


@pytest.mark.parametrize("seed", range(5))
def test_string_and_json_round_trip(any_space, seed):
    arch = sample_uniform(any_space, random.Random(seed))
    assert Arch.parse(str(arch)) == arch
    assert Arch.from_json(json.loads(json.dumps(arch.to_json()))) == arch
    assert arch.validated(any_space) == arch
    assert hash(Arch.parse(str(arch))) == hash(arch)


def test_ops_only_string_gets_default_channels(cifar_space):
    arch = Arch.parse(PUBLISHED).validated(cifar_space)
    assert arch.channels == (4,) * 20
    assert str(arch).startswith("2:4,1:4,0:4")
    assert Arch.parse("(2, 1, 0, 1, 2, 0, 2, 0, 2, 0, 2, 3, 0, 0, 0, 0, 3, 2, 3, 3)") == Arch.parse(PUBLISHED)


def test_load_from_file(tmp_path, cifar_space):
    arch = Arch.parse(PUBLISHED).validated(cifar_space)
    path = tmp_path / "arch.json"
    path.write_text(json.dumps(arch.to_json()))
    assert Arch.load(path) == arch
    path.write_text(json.dumps({"best": {"arch": str(arch), "accuracy": 0.5}}))
    assert Arch.load(path) == arch
    path.write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        Arch.load(path)
    with pytest.raises(FileNotFoundError, match="missing.json"):
        Arch.load(tmp_path / "missing.json")


def test_skip_channel_choice_is_canonical():
    # Skip (and MBConv e1) has no width, so any channel choice names the same network:
    # validation gives it the default index, and keeps every other block's choice.
    space = SearchSpace.from_dict(tiny_space_dict(
        stages=[{"channels": 16, "repeats": 1, "stride": 2}, {"channels": 16, "repeats": 2, "stride": 1}],
        ops=["mbconv_k3_e3", "mbconv_k3_e1", "skip"], channel_multipliers=[0.5, 1.0, 1.5], default_multiplier=1.0,
    ), "tiny-skip")
    default = space.default_channel
    assert default == 1
    arch = Arch((0, 2, 1), (2, 0, 2)).validated(space)
    assert arch == Arch((0, 2, 1), (2, default, default))
    assert str(arch) == "0:2,2:1,1:1"
    other = Arch((0, 2, 1), (2, 2, 0)).validated(space)
    assert other == arch and hash(other) == hash(arch) and str(other) == str(arch)
    assert Arch((0, 2, 1), (0, 0, 0)).validated(space) != arch  # a searched width still counts
    assert Arch((0, 2, 1)).validated(space) == Arch((0, 2, 1), (default,) * 3)  # ops only: default widths
    for seed in range(20):  # sampling yields canonical archs
        sampled = sample_uniform(space, random.Random(seed))
        assert sampled.validated(space) == sampled
        assert all(c == default for o, c in zip(sampled.ops, sampled.channels) if o != 0)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "is empty"),
        ("1,a,2", "item 1 is 'a'"),
        ("1:2:3", "item 0 is '1:2:3'"),
        ("1:2,3", "give a channel choice for every block or for none"),
        ("-1,2", "item 0 is '-1'"),
    ],
)
def test_bad_strings(text, expected):
    with pytest.raises(ValueError, match=expected):
        Arch.parse(text)


def test_validation_errors(cifar_space, proxyless_cifar_space):
    with pytest.raises(ValueError, match="has 3 choices; space 'shufflenetv2-cifar' has 20 choice blocks"):
        Arch.parse("0,1,2").validated(cifar_space)
    with pytest.raises(ValueError, match=r"block 3 op index 4 is out of range; expected 0..3"):
        Arch.parse("0,0,0,4" + ",0" * 16).validated(cifar_space)
    with pytest.raises(ValueError, match=r"block 1 channel index 8 is out of range; expected 0..7"):
        Arch.parse("0:0,0:8" + ",0:0" * 18).validated(cifar_space)
    skip_first = "6" + ",0" * 20
    with pytest.raises(ValueError, match=r"block 0 cannot use 'skip' .* maps 16->24 at stride 2"):
        Arch.parse(skip_first).validated(proxyless_cifar_space)
    with pytest.raises(ValueError, match="no channel search"):
        Arch.parse("0:1" + ",0:1" * 20).validated(proxyless_cifar_space)
    with pytest.raises(ValueError, match="2 op choices but 1 channel choices"):
        Arch((1, 2), (0,))
