"""The shipped training configs load, and each CIFAR experiment changes only what it says.

Every `configs/train/cifar10-small-*.yaml` is one controlled experiment against the CPU recipe
(`cifar10-small.yaml`), and the README's rank-correlation tables compare them as such. If the
recipe is edited and a variant is not, the comparison silently stops being one change at a
time; this test names the key that drifted.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from spos.config import load_train_config

ROOT = Path(__file__).resolve().parents[1]
TRAIN_CONFIGS = sorted((ROOT / "configs" / "train").glob("*.yaml"))
RECIPE = ROOT / "configs" / "train" / "cifar10-small.yaml"

# Keys that change when and how often a run reports or saves, never what it trains.
BOOKKEEPING = {"eval.every", "checkpoint_every", "log_every"}

# What each variant of the recipe is meant to change (its header comment says why).
VARIANT_CHANGES = {
    "cifar10-small-centre.yaml": {"supernet.init"},
    "cifar10-small-independent.yaml": {"supernet.init"},
    "cifar10-small-uniform.yaml": {"sampler.name"},
    "cifar10-small-tilted.yaml": {"sampler.top_bin_weight"},
    "cifar10-small-long.yaml": {"recipe.epochs"},
    "cifar10-small-short.yaml": {"recipe.epochs", "recipe.warmup_steps"},
    "cifar10-small-fair.yaml": {"sampler.name", "recipe.epochs", "recipe.warmup_steps"},
    "cifar10-small-distill.yaml": {"sampler.inplace_distillation", "recipe.epochs", "recipe.warmup_steps"},
    "cifar10-small-distill-long.yaml": {"sampler.inplace_distillation"},
    "cifar10-small-bilateral.yaml": {"supernet.bilateral"},
}


def flatten(tree: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


@pytest.mark.parametrize("path", TRAIN_CONFIGS, ids=lambda p: p.name)
def test_every_shipped_train_config_loads_with_its_space(path):
    config = load_train_config(path)
    assert config.load_space().blocks


def test_every_recipe_variant_is_listed():
    variants = {p.name for p in TRAIN_CONFIGS if p.name.startswith("cifar10-small-")}
    assert variants == set(VARIANT_CHANGES), "list each new cifar10-small-*.yaml with what it changes"


@pytest.mark.parametrize("name", sorted(VARIANT_CHANGES))
def test_each_recipe_variant_changes_only_what_it_declares(name):
    recipe = flatten(load_train_config(RECIPE).to_dict())
    variant = flatten(load_train_config(RECIPE.parent / name).to_dict())
    changed = {key for key in recipe.keys() | variant.keys() if recipe.get(key) != variant.get(key)}
    undeclared = {key: (recipe.get(key), variant.get(key)) for key in changed - VARIANT_CHANGES[name] - BOOKKEEPING}
    assert not undeclared, f"{name} differs from the recipe in undeclared keys (recipe, variant): {undeclared}"
    assert VARIANT_CHANGES[name] <= changed, f"{name} no longer changes {VARIANT_CHANGES[name] - changed}"
