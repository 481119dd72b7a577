"""Data splits and training configs: sizes, balance, determinism, one-line errors naming the key."""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from spos.config import TrainConfig, load_train_config
from spos.data import DataConfig, fixed_batches, load_data, set_epoch
from tests.conftest import CIFAR_SMALL, ROOT


def labels_of(dataset) -> list[int]:
    return [int(dataset[i][1]) for i in range(len(dataset))]


def test_digits_splits_are_balanced_disjoint_and_sized_to_the_space():
    cfg = DataConfig("digits", input_size=16, in_channels=3, search_val_per_class=10)
    splits = load_data(cfg)
    assert (splits.num_classes, splits.in_channels, splits.input_size) == (10, 3, 16)
    assert splits.train[0][0].shape == (3, 16, 16)
    assert Counter(labels_of(splits.search_val)) == {c: 10 for c in range(10)}
    assert len(splits.train) + len(splits.search_val) + len(splits.test) == 1797
    # search-val is carved out of the training split: no image in both.
    assert not set(splits.train.indices) & set(splits.search_val.indices)
    # the same seed gives the same split; another seed another one, the test split unchanged
    assert load_data(cfg).search_val.indices == splits.search_val.indices
    other = load_data(DataConfig("digits", input_size=16, search_val_per_class=10, split_seed=1))
    assert other.search_val.indices != splits.search_val.indices
    assert torch.equal(other.test[0][0], splits.test[0][0])


def test_augmentation_depends_on_seed_epoch_and_index_only():
    splits = load_data(DataConfig("digits", input_size=16, in_channels=1, search_val_per_class=5), seed=0)
    first = splits.train[3][0]
    assert torch.equal(splits.train[3][0], first)  # no hidden global RNG
    torch.manual_seed(123)
    assert torch.equal(splits.train[3][0], first)
    changed = []
    for epoch in range(1, 6):
        set_epoch(splits.train, epoch)
        changed.append(not torch.equal(splits.train[3][0], first))
    assert any(changed)
    # search-val and test are never augmented: another augmentation seed and epoch give the same
    # images, while the training images do change with them
    other = load_data(DataConfig("digits", input_size=16, in_channels=1, search_val_per_class=5), seed=1)
    for split in (other.train, other.search_val, other.test):
        set_epoch(split, 4)
    assert not torch.equal(other.train[3][0], first)
    assert other.search_val.indices == splits.search_val.indices
    assert torch.equal(other.search_val[0][0], splits.search_val[0][0])
    assert torch.equal(other.test[0][0], splits.test[0][0])


def test_fixed_batches_are_deterministic():
    splits = load_data(DataConfig("digits", input_size=16, search_val_per_class=5))
    a = fixed_batches(splits.search_val, 2, 8, seed=4)
    b = fixed_batches(splits.search_val, 2, 8, seed=4)
    assert len(a) == 2 and a[0][0].shape == (8, 3, 16, 16)
    assert all(torch.equal(x1, x2) and torch.equal(y1, y2) for (x1, y1), (x2, y2) in zip(a, b))
    with pytest.raises(ValueError, match="the split has 50"):
        fixed_batches(splits.search_val, 10, 8, seed=0)


def make_imagefolder(root: Path, classes=("a", "b"), per_class=4, size=12) -> Path:
    for split in ("train", "val"):
        for c, name in enumerate(classes):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(per_class):
                Image.new("RGB", (size, size), (40 * c + i, 10 * i, 200)).save(folder / f"{i}.png")
    return root


def test_imagefolder_resizes_and_balances(tmp_path):
    root = make_imagefolder(tmp_path / "imgs")
    splits = load_data(DataConfig("imagefolder", root=root, input_size=8, search_val_per_class=1))
    assert splits.class_names == ("a", "b") and splits.num_classes == 2
    assert splits.train[0][0].shape == (3, 8, 8)
    assert (len(splits.train), len(splits.search_val), len(splits.test)) == (6, 2, 8)


@pytest.mark.skipif(not CIFAR_SMALL.is_dir(), reason=f"{CIFAR_SMALL} absent")
def test_cifar10_small_config_finds_the_shared_data():
    cfg = load_train_config(ROOT / "configs" / "train" / "cifar10-small.yaml")
    assert cfg.data.root == CIFAR_SMALL.resolve()
    splits = load_data(cfg.data)
    assert (len(splits.train), len(splits.search_val), len(splits.test)) == (8000, 2000, 2000)
    assert splits.train[0][0].shape == (3, 32, 32)


# ---- configs ------------------------------------------------------------------------------


def write_config(folder: Path, **sections) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "space.yaml").write_text((ROOT / "configs" / "spaces" / "shufflenetv2-digits.yaml").read_text())
    data = {"space": "space.yaml", "data": {"dataset": "digits"}, "recipe": {"steps": 10}}
    data.update(sections)
    path = folder / "train.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_relative_paths_resolve_against_the_config_folder(tmp_path, monkeypatch):
    path = write_config(tmp_path / "cfg", data={"dataset": "imagefolder", "root": "../imgs"})
    monkeypatch.chdir(ROOT)
    cfg = load_train_config(path)
    assert cfg.space_path == (tmp_path / "cfg" / "space.yaml").resolve()
    assert cfg.data.root == (tmp_path / "imgs").resolve()
    # input size and channels come from the space
    assert (cfg.data.input_size, cfg.data.in_channels) == (16, 1)


def test_shipped_configs_load_and_round_trip():
    for path in sorted((ROOT / "configs" / "train").glob("*.yaml")):
        cfg = load_train_config(path)
        assert TrainConfig.from_dict(cfg.to_dict()) == cfg


def test_overrides_and_yaml_exponents(tmp_path):
    path = write_config(tmp_path, recipe={"steps": 10, "weight_decay": "4e-5"})
    cfg = load_train_config(path, seed=7, overrides={"recipe.steps": 20, "data.workers": 2})
    assert (cfg.seed, cfg.recipe.steps, cfg.data.workers, cfg.recipe.weight_decay) == (7, 20, 2, 4e-5)


def test_a_length_override_replaces_the_other_length_key(tmp_path):
    in_epochs = write_config(tmp_path / "epochs", recipe={"epochs": 3})
    assert load_train_config(in_epochs, overrides={"recipe.steps": 20}).recipe.steps == 20
    in_steps = write_config(tmp_path / "steps", recipe={"steps": 10})
    cfg = load_train_config(in_steps, overrides={"recipe.epochs": 2})
    assert (cfg.recipe.epochs, cfg.recipe.steps) == (2, None)
    with pytest.raises(ValueError, match=r"recipe: give exactly one of 'steps' and 'epochs'"):
        load_train_config(in_steps, overrides={"recipe.epochs": 2, "recipe.steps": 5})


@pytest.mark.parametrize(
    "sections, message",
    [
        ({"data": {"dataset": "mnist"}}, r"data.dataset: unknown dataset 'mnist'; expected one of: digits, cifar10, imagefolder"),
        ({"data": {"dataset": "imagefolder"}}, r"data.root: required for dataset 'imagefolder'"),
        ({"recipe": {"steps": 10, "lr": "fast"}}, r"recipe.lr: expected a finite number, got 'fast'"),
        ({"recipe": {"steps": 10, "batch_size": 1.5}}, r"recipe.batch_size: expected int, got 1.5"),
        ({"recipe": {"steps": 10, "epochs": 2}}, r"recipe: give exactly one of 'steps' and 'epochs'"),
        ({"sampler": {"name": "greedy"}}, r"sampler.name: unknown sampler 'greedy'"),
        ({"sampler": {"bins": True}}, r"sampler.bins: expected int, got True"),
        ({"data": {"dataset": "digits", "input_size": 32}}, r"data.input_size: 32 does not match the space's input_size 16"),
        ({"eval": {"evry": 5}}, r"eval: unknown key 'evry'"),
        ({"space": "nowhere.yaml"}, r"space: search space file not found"),
    ],
)
def test_bad_configs_name_the_key(tmp_path, sections, message):
    path = write_config(tmp_path, **sections)
    with pytest.raises((ValueError, FileNotFoundError), match=message):
        load_train_config(path)


def test_missing_root_is_a_one_line_cli_error(tmp_path, capsys):
    from pipeline.cli import main

    path = write_config(tmp_path, data={"dataset": "imagefolder", "root": "missing"})
    assert main(["train", "--config", str(path), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("spos train: error: data.root: folder not found: ") and "\n" not in err


def test_evaluation_batches_score_search_val_or_on_request_the_test_split():
    from spos.evaluate import evaluation_batches

    splits = load_data(DataConfig("digits", input_size=8, in_channels=1, search_val_per_class=5))
    searched = evaluation_batches(splits, 2, 16)
    held_out = evaluation_batches(splits, 2, 16, split="test")
    assert sum(len(y) for _, y in searched.validation) == len(splits.search_val)
    assert sum(len(y) for _, y in held_out.validation) == len(splits.test)
    assert all(torch.equal(a, b) for a, b in zip(searched.recalibration, held_out.recalibration))
    with pytest.raises(ValueError, match=r"split 'val': expected one of search_val, test, train"):
        evaluation_batches(splits, 2, 16, split="val")


def test_the_train_split_is_scored_on_the_training_images_without_augmentation():
    from spos.data import set_epoch, unaugmented
    from spos.evaluate import evaluation_batches

    splits = load_data(DataConfig("digits", input_size=8, in_channels=1, search_val_per_class=5, augment=True))
    scored = evaluation_batches(splits, 2, 16, split="train")
    images = torch.cat([x for x, _ in scored.validation])
    assert len(images) == len(splits.train)
    plain = unaugmented(splits.train)
    for epoch in (0, 3):  # an augmented draw differs from epoch to epoch; the scored images do not
        set_epoch(splits.train, epoch)
        assert torch.equal(images[7], plain[7][0])
    assert not all(torch.equal(splits.train[i][0], plain[i][0]) for i in range(20))
    assert splits.train.dataset.augment is not None  # the training split itself keeps its augmentation
    with pytest.raises(TypeError, match="expected an ImageDataset or a Subset of one, got list"):
        unaugmented([1, 2])


def test_data_whose_classes_differ_from_the_head_is_refused_before_any_output(tmp_path):
    from spos.retrain import retrain
    from spos.sampling import sample_uniform
    from spos.train import train_supernet

    make_imagefolder(tmp_path / "imgs", classes=("a", "b", "c"))
    cfg = load_train_config(write_config(
        tmp_path / "cfg", data={"dataset": "imagefolder", "root": "../imgs", "search_val_per_class": 1}))
    message = (r"data: the imagefolder dataset has 3 classes, space 'shufflenetv2-digits' has num_classes 10; "
               r"for this data set num_classes: 3 in a copy of the space file")
    with pytest.raises(ValueError, match=message):
        train_supernet(cfg, tmp_path / "supernet")
    arch = sample_uniform(cfg.load_space(), random.Random(0))
    with pytest.raises(ValueError, match=message):
        retrain(arch, cfg, tmp_path / "retrained")
    assert not (tmp_path / "supernet").exists() and not (tmp_path / "retrained").exists()


def test_too_few_training_images_for_bn_recalibration_names_the_eval_keys_before_training(tmp_path):
    from spos.train import train_supernet

    make_imagefolder(tmp_path / "imgs", classes=tuple("abcdefghij"), per_class=3)
    cfg = load_train_config(write_config(
        tmp_path / "cfg", data={"dataset": "imagefolder", "root": "../imgs", "search_val_per_class": 1},
        eval={"paths": 1, "recal_batches": 2, "batch_size": 16}))
    with pytest.raises(ValueError, match=r"eval\.recal_batches x eval\.batch_size \(BN recalibration images\): "
                                         r"2 x 16 = 32 distinct images requested, the split has 20; lower either"):
        train_supernet(cfg, tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_the_recorded_preprocessing_turns_an_image_file_into_the_networks_input(tmp_path):
    """Follow `Preprocessing` by hand with PIL on a non-square file: the tensor the test split
    gives is what a deployment that reads export.json would compute."""
    root = make_imagefolder(tmp_path / "imgs", classes=("a", "b", "c"))
    odd = Image.effect_noise((48, 40), 60).convert("RGB")
    odd.save(root / "val" / "a" / "0.png")
    splits = load_data(DataConfig("imagefolder", root=root, input_size=16, search_val_per_class=1))
    prep = splits.preprocessing
    assert (prep.pixel_scale, prep.channels) == (255.0, "R, G, B") and len(prep.mean) == 3
    assert "shorter side to 16 px" in prep.resize and "centre crop to 16x16" in prep.resize
    resized = odd.resize((19, 16), Image.BILINEAR)  # shorter side (40) to 16, the longer (48) in proportion
    left = round((19 - 16) / 2)  # torchvision's centre: 1.5 rounds to 2
    cropped = torch.from_numpy(np.array(resized.crop((left, 0, left + 16, 16)))).float()
    pixels = cropped.permute(2, 0, 1) / prep.pixel_scale
    by_hand = (pixels - torch.tensor(prep.mean).view(3, 1, 1)) / torch.tensor(prep.std).view(3, 1, 1)
    # within two levels of 255 after normalization: PIL and torchvision round the bilinear weights apart
    assert torch.allclose(splits.test[0][0], by_hand, atol=2 / 255 / min(prep.std))
