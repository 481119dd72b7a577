"""Search spaces load from YAML and refuse malformed files with a message naming the field."""

from __future__ import annotations

import copy

import pytest
import yaml

from spos.space import SearchSpace
from tests.conftest import SPACES_DIR, tiny_space_dict


def test_shipped_spaces_have_paper_structure():
    shuffle = SearchSpace.from_yaml(SPACES_DIR / "shufflenetv2.yaml")
    assert shuffle.num_blocks == 20
    assert all(len(b.candidates) == 4 for b in shuffle.blocks)
    assert len(shuffle.channel_multipliers) == 8
    assert [b.stride for b in shuffle.blocks[:5]] == [2, 1, 1, 1, 2]
    assert shuffle.blocks[0].in_size == 112 and shuffle.head_in_size == 7

    proxyless = SearchSpace.from_yaml(SPACES_DIR / "proxyless.yaml")
    assert proxyless.num_blocks == 21
    skip = proxyless.ops.index("skip")
    first_of_stage = {0, 4, 8, 12, 16, 20}
    for block in proxyless.blocks:
        assert (skip in block.candidates) == (block.index not in first_of_stage)
    assert proxyless.head_in_size == 7


def test_hash_is_content_not_formatting(tmp_path):
    src = SPACES_DIR / "shufflenetv2-cifar.yaml"
    data = yaml.safe_load(src.read_text())
    reformatted = tmp_path / "same.yaml"
    reformatted.write_text(yaml.safe_dump(data, default_flow_style=True))
    assert SearchSpace.from_yaml(src).hash == SearchSpace.from_yaml(reformatted).hash
    data["head"]["channels"] = 512
    reformatted.write_text(yaml.safe_dump(data))
    assert SearchSpace.from_yaml(src).hash != SearchSpace.from_yaml(reformatted).hash


def test_dict_round_trip(any_space):
    assert SearchSpace.from_dict(any_space.to_dict()) == any_space


def _broken(path: str, value):
    data = copy.deepcopy(tiny_space_dict())
    *parents, last = path.split(".")
    node = data
    for key in parents:
        node = node[int(key)] if key.isdigit() else node[key]
    if value is KeyError:
        del node[last]
    else:
        node[int(last) if last.isdigit() else last] = value
    return data


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        ("ops.1", "choice_9", "ops[1]: unknown op 'choice_9'"),
        ("stages.0.repeats", -2, "stages[0].repeats: expected a positive integer, got -2"),
        ("stages.0.repeats", "4", "stages[0].repeats: expected int, got '4'"),
        ("stages.1.stride", 3, "stages[1].stride: expected stride 1 or 2, got 3"),
        ("head.dropout", 1.5, "head.dropout"),
        ("input_size", True, "input_size: expected int, got True"),
        ("stem.channels", KeyError, "stem: missing required field 'channels'"),
        ("channel_multipliers.0", 0, "channel_multipliers[0]: expected a positive number, got 0"),
        ("default_multiplier", 0.7, "default_multiplier: 0.7 is not one of channel_multipliers"),
        ("activation", "gelu", "activation: expected 'relu' or 'relu6', got 'gelu'"),
        ("stages.0.chanels", 3, "stages[0]: unknown key 'chanels'"),
        # bounds: a typo must fail here, naming the field, not as OverflowError in a builder
        ("stages.0.repeats", 100000, "stages[0].repeats: expected at most 64 (this project's bound"),
        ("stem.channels", 10**30, "stem.channels: expected at most 16384"),
        ("input_size", 10**6, "input_size: expected at most 4096"),
        ("channel_multipliers.1", float("inf"), "channel_multipliers[1]: expected a finite number, got inf"),
        ("channel_multipliers.1", float("nan"), "channel_multipliers[1]: expected a finite number, got nan"),
        ("channel_multipliers.1", 1e6, "channel_multipliers[1]: expected at most 8.0"),
        ("default_multiplier", float("inf"), "default_multiplier: expected a finite number, got inf"),
        ("head", [64], "head: expected a mapping, got [64]"),
        ("head.channels", KeyError, "head: missing required field 'channels'"),
        ("stages", {"channels": 8}, "stages: expected a list"),
        ("stages.1", 7, "stages[1]: expected a mapping, got 7"),
        ("fixed_blocks", [{"op": "mbconv_k9", "channels": 8}], "fixed_blocks[0].op: unknown op 'mbconv_k9'"),
        ("nme", "x", "unknown key 'nme'"),
    ],
)
def test_malformed_space_names_field_and_value(path, value, expected):
    with pytest.raises(ValueError, match=None) as err:
        SearchSpace.from_dict(_broken(path, value), "tiny")
    assert expected in str(err.value)


def test_space_file_with_inf_multiplier_or_huge_repeats_is_a_one_line_error(tmp_path):
    path = tmp_path / "space.yaml"
    for text, expected in [
        (yaml.safe_dump(tiny_space_dict()).replace("- 1.5", "- .inf"), r"channel_multipliers\[2\]: expected a finite number, got inf"),
        (yaml.safe_dump(tiny_space_dict()).replace("repeats: 2", "repeats: 100000", 1), r"stages\[0\].repeats: expected at most 64"),
    ]:
        path.write_text(text)
        with pytest.raises(ValueError, match=expected):
            SearchSpace.from_yaml(path)


def test_skip_where_shape_changes_is_refused():
    data = tiny_space_dict(
        ops=["skip"], fixed_blocks=[{"op": "skip", "channels": 12, "stride": 1}], channel_multipliers=[]
    )
    with pytest.raises(ValueError, match=r"fixed_blocks\[0\]: op 'skip' needs in == out channels .* 8->12"):
        SearchSpace.from_dict(data, "tiny")
    data = tiny_space_dict(ops=["skip"], channel_multipliers=[])
    with pytest.raises(ValueError, match=r"choice block 0: 8->16, stride 2\): no candidate op fits"):
        SearchSpace.from_dict(data, "tiny")


def test_shuffle_unit_at_stride_one_must_keep_channels():
    data = tiny_space_dict(stages=[{"channels": 16, "repeats": 2, "stride": 1}])
    with pytest.raises(ValueError, match="at stride 1 needs in == out channels, got 8->16"):
        SearchSpace.from_dict(data, "tiny")


def test_missing_and_invalid_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.yaml"):
        SearchSpace.from_yaml(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed")
    with pytest.raises(ValueError, match="not valid YAML"):
        SearchSpace.from_yaml(bad)
    bad.write_text("- a list")
    with pytest.raises(ValueError, match="expected a mapping at the top level, got list"):
        SearchSpace.from_yaml(bad)
