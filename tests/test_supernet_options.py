"""Supernet options of a training config: nested initialization, BN affine, channels-last training."""

from __future__ import annotations

import json

import pytest
import torch
import yaml

from spos.arch import Arch
from spos.config import load_train_config
from spos.space import SearchSpace
from spos.supernet import Supernet
from spos.train import train_supernet
from tests.conftest import tiny_space_dict
from tests.test_mechanics import _mbconv_space_dict


def _uniform_arch(space: SearchSpace, op: int) -> Arch:
    ops = tuple(op if op in block.candidates else block.candidates[0] for block in space.blocks)
    return Arch(ops).validated(space)


@pytest.mark.parametrize("space_dict, same, different", [
    (tiny_space_dict(), [0, 1, 2], [3]),        # choice_3/5/7 nest; choice_x has another structure
    (_mbconv_space_dict(), [0, 1], [2]),         # k3_e3 / k5_e3 nest; k7_e6 shares only the first channels
], ids=["shufflenetv2", "mbconv"])
def test_nested_init_starts_same_structured_candidates_as_one_function(space_dict, same, different):
    space = SearchSpace.from_dict(space_dict, "test space")
    x = torch.randn(4, 3, space.input_size, space.input_size)
    torch.manual_seed(0)
    nested = Supernet(space, init="nested").eval()
    outputs = {op: nested(x, _uniform_arch(space, op)) for op in same + different}
    for op in same[1:]:
        torch.testing.assert_close(outputs[op], outputs[same[0]], rtol=0, atol=1e-6)
    for op in different:
        assert not torch.allclose(outputs[op], outputs[same[0]], atol=1e-6)
    torch.manual_seed(0)
    independent = Supernet(space).eval()
    assert not torch.allclose(independent(x, _uniform_arch(space, same[1])), independent(x, _uniform_arch(space, same[0])))


def test_candidate_similarity_is_one_at_a_nested_start_and_not_for_independent_weights(tiny_space):
    from spos.nested_init import candidate_similarity

    torch.manual_seed(0)
    rows = [candidate_similarity(b) for b in Supernet(tiny_space, init="nested").choices]
    # choice_5 / choice_7 hold choice_3's kernels at their centre: every convolution is the same
    assert all(set(row) == {"choice_5", "choice_7"} for row in rows)
    assert all(v == pytest.approx(1.0) for row in rows for sims in row.values() for v in sims)
    torch.manual_seed(0)
    values = [v for b in Supernet(tiny_space).choices for sims in candidate_similarity(b).values() for v in sims]
    assert values and max(abs(v) for v in values) < 0.6


def test_whole_kernel_similarity_tells_a_centre_start_from_a_nested_one(tiny_space):
    from spos.nested_init import candidate_similarity

    for init, depthwise_whole in (("nested", lambda v: v == pytest.approx(1.0)), ("centre", lambda v: 0.3 < v < 0.95)):
        torch.manual_seed(0)
        for block in Supernet(tiny_space, init=init).choices:
            assert all(v == pytest.approx(1.0) for sims in candidate_similarity(block).values() for v in sims)
            for sims in candidate_similarity(block, whole=True).values():
                # choice_3/5/7's main branch: 1x1, k x k depthwise, 1x1 (then a stride-2 block's projection)
                pointwise_in, depthwise, pointwise_out = sims[:3]
                assert pointwise_in == pytest.approx(1.0) and pointwise_out == pytest.approx(1.0)
                assert depthwise_whole(depthwise), (init, sims)


def test_centre_init_shares_the_kernel_centre_and_keeps_each_candidates_random_ring(tiny_space):
    x = torch.randn(4, 3, tiny_space.input_size, tiny_space.input_size)
    torch.manual_seed(0)
    independent = Supernet(tiny_space).eval()
    torch.manual_seed(0)
    centre = Supernet(tiny_space, init="centre").eval()
    for blocks, drawn in zip(centre.choices, independent.choices):
        template = [m.conv.weight for m in blocks["choice_3"].main]
        for name in ("choice_5", "choice_7"):
            for i, (mine, own) in enumerate(zip((m.conv.weight for m in blocks[name].main),
                                                (m.conv.weight for m in drawn[name].main))):
                k, pad = template[i].shape[-1], (mine.shape[-1] - template[i].shape[-1]) // 2
                centre_window = (..., slice(pad, pad + k), slice(pad, pad + k))
                torch.testing.assert_close(mine[centre_window], template[i], rtol=0, atol=0)
                ring = torch.ones_like(mine, dtype=torch.bool)
                ring[centre_window] = False
                # the ring is the candidate's own random draw (the same seed's independent
                # supernet), not zeros as with init "nested"
                if ring.any():
                    torch.testing.assert_close(mine[ring], own[ring], rtol=0, atol=0)
                    assert mine[ring].abs().min() > 0
    same_centre = {op: centre(x, _uniform_arch(tiny_space, op)) for op in (0, 1, 2)}
    assert not torch.allclose(same_centre[1], same_centre[0], atol=1e-4)
    assert not torch.allclose(same_centre[2], same_centre[1], atol=1e-4)


def test_unknown_init_is_refused(tiny_space):
    with pytest.raises(ValueError, match="unknown 'shared'; expected one of: independent, nested, centre"):
        Supernet(tiny_space, init="shared")


def _config(tmp_path, **extra) -> dict:
    (tmp_path / "space.yaml").write_text(yaml.safe_dump(tiny_space_dict()))
    return {
        "space": "space.yaml", "data": {"dataset": "digits", "search_val_per_class": 5},
        "recipe": {"batch_size": 32, "steps": 6, "lr": 0.05}, "sampler": {"name": "uniform"},
        "eval": {"paths": 0}, "log_every": 1, **extra,
    }


def _losses(run_dir) -> list[float]:
    return [json.loads(line)["loss"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_training_config_builds_the_supernet_it_names_and_channels_last_trains_the_same(tmp_path):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        runs = {}
        for name, extra in {"plain": {}, "nhwc": {"channels_last": True},
                            "nested": {"supernet": {"init": "nested", "bn_affine": True}}}.items():
            (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump(_config(tmp_path, **extra)))
            result = train_supernet(load_train_config(tmp_path / f"{name}.yaml"), tmp_path / name)
            runs[name] = result
    finally:
        torch.set_num_threads(threads)
    # NHWC changes only the kernels' summation order: the same first steps, then rounding drift
    nhwc, plain = _losses(tmp_path / "nhwc"), _losses(tmp_path / "plain")
    assert nhwc[0] == pytest.approx(plain[0], abs=1e-5)
    assert nhwc == pytest.approx(plain, abs=0.02)
    assert _losses(tmp_path / "nested") != pytest.approx(_losses(tmp_path / "plain"), abs=1e-4)
    stored = torch.load(runs["nested"].supernet, weights_only=True)
    assert stored["bn_affine"] is True and stored["config"]["supernet"] == {"bn_affine": True, "init": "nested"}


def test_bad_supernet_section_is_one_line(tmp_path):
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(_config(tmp_path, supernet={"init": "zeros"})))
    with pytest.raises(ValueError, match="supernet.init: unknown 'zeros'"):
        load_train_config(tmp_path / "bad.yaml")
