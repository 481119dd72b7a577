"""benchmarks/standalone_reference.py: `spos correlate`'s stand-alone runs, of any length, without a supernet."""

from __future__ import annotations

import importlib.util
import json
import random

import pytest
import torch

from spos.checkpoint import load_supernet
from spos.config import load_train_config
from spos.correlate import CorrelateSettings, correlate, standalone_config, standalone_key, stratified_by_flops
from spos.hashing import file_sha256
from spos.model_file import load_model
from tests.conftest import ROOT
from tests.test_correlate import supernet_file  # noqa: F401  (a fixture)

spec = importlib.util.spec_from_file_location("standalone_reference", ROOT / "benchmarks/standalone_reference.py")
reference = importlib.util.module_from_spec(spec)
spec.loader.exec_module(reference)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def records(journal):
    return [json.loads(line) for line in journal.read_text().splitlines()]


def test_runs_repeat_spos_correlates_and_resume(supernet_file, tmp_path, capsys):  # noqa: F811
    loaded = load_supernet(supernet_file)
    settings = CorrelateSettings(num_archs=3, steps=3, seed=0, recal_batches=1, batch_size=32)
    result = correlate(loaded, file_sha256(supernet_file), tmp_path / "corr", settings)
    journal, config = tmp_path / "corr" / "standalone.jsonl", supernet_file.parent / "train.yaml"
    out = tmp_path / "ref"

    reference.main(["--config", str(config), "--archs", str(journal), "--steps", "3", "--seeds", "0", "1",
                    "--out", str(out)])
    runs = records(out / "standalone.jsonl")
    archs = [p.arch for p in result.archs]
    assert [(r["arch"], r["seed"]) for r in runs] == [(a, s) for s in (0, 1) for a in archs]  # seed by seed
    cfg = load_train_config(config)
    assert {r["standalone_config"] for r in runs if r["seed"] == 1} == {standalone_key(standalone_config(cfg, 3, 1))}
    # seed 0 is the very run `spos correlate` trained: same recipe, same seed, same weights
    by_arch = {r["arch"]: r for r in runs if r["seed"] == 0}
    assert [by_arch[p.arch]["standalone_top1"] for p in result.archs] == [p.standalone_top1 for p in result.archs]
    for i in range(len(archs)):
        ours = load_model(out / "standalone" / f"{i:03d}-seed0" / "model.pt").net.state_dict()
        theirs = load_model(tmp_path / "corr" / "standalone" / f"{i:03d}" / "model.pt").net.state_dict()
        assert all(torch.equal(ours[k], theirs[k]) for k in theirs)
    assert [by_arch[p.arch]["standalone_config"] for p in result.archs] == [r["standalone_config"]
                                                                            for r in records(journal)]

    capsys.readouterr()
    reference.main(["--config", str(config), "--archs", str(journal), "--steps", "3", "--seeds", "0", "1",
                    "--out", str(out)])
    assert "6 run(s) done, 0 to train" in capsys.readouterr().out
    assert len(records(out / "standalone.jsonl")) == 6
    with pytest.raises(SystemExit, match=r"holds seed 0 trained with config \w+, this command's is \w+"):
        reference.main(["--config", str(config), "--archs", str(journal), "--steps", "4", "--out", str(out)])


def test_bad_options_are_one_line_errors(supernet_file, tmp_path, capsys):  # noqa: F811
    config = str(supernet_file.parent / "train.yaml")
    with pytest.raises(SystemExit, match="no such file"):
        reference.main(["--config", config, "--archs", str(tmp_path / "none.jsonl"), "--steps", "2",
                        "--out", str(tmp_path / "out")])
    for bad, message in ((["--steps", "0"], "--steps: expected a positive"), (["--steps", "2", "--jobs", "0"], "--jobs"),
                         (["--steps", "2", "--seeds", "1", "1"], "--seeds: expected distinct seeds, got")):
        with pytest.raises(SystemExit):
            reference.main(["--config", config, "--archs", "x.jsonl", *bad, "--out", str(tmp_path / "out")])
        assert message in capsys.readouterr().err
    foreign = tmp_path / "foreign.jsonl"
    foreign.write_text(json.dumps({"arch": "0,1", "seed": 0, "standalone_top1": 0.5}) + "\n")
    with pytest.raises(SystemExit, match=r"--archs: arch 0,1 has 2 choices; space 'tiny' has \d+ choice blocks"):
        reference.main(["--config", config, "--archs", str(foreign), "--steps", "2", "--out", str(tmp_path / "out")])
    with pytest.raises(SystemExit, match="standalone_reference: .*missing.yaml"):
        reference.main(["--config", str(tmp_path / "missing.yaml"), "--archs", str(foreign), "--steps", "2",
                        "--out", str(tmp_path / "out")])
    assert not (tmp_path / "out").exists()
    (tmp_path / "damaged").mkdir()
    damaged = tmp_path / "damaged" / "standalone.jsonl"
    damaged.write_text(json.dumps({"arch": "0,1"}) + "\n")
    with pytest.raises(SystemExit, match=r"--archs .*damaged/standalone.jsonl: record 1 is \{'arch': '0,1'\}; expected"):
        reference.main(["--config", config, "--archs", str(damaged), "--steps", "2", "--out", str(tmp_path / "out")])
    arch = str(stratified_by_flops(load_train_config(config).load_space(), 1, random.Random(0))[0])
    good = tmp_path / "good.jsonl"
    good.write_text(json.dumps({"arch": arch, "seed": 0, "standalone_top1": 0.5}) + "\n")
    with pytest.raises(SystemExit, match=r"damaged/standalone.jsonl: record 1 is \{'arch': '0,1'\}; expected a run"):
        reference.main(["--config", config, "--archs", str(good), "--steps", "2", "--out", str(tmp_path / "damaged")])
    assert damaged.read_text() == json.dumps({"arch": "0,1"}) + "\n"  # left as it was
