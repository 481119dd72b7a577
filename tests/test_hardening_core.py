"""Hardening of the spos core: one hashing helper, one-line errors on edge input."""

from __future__ import annotations

import hashlib

import pytest
import torch

from pipeline.output import parse_count
from spos.arch import Arch
from spos.checkpoint import load_checkpoint, load_supernet, save_atomic
from spos.hashing import file_sha256
from spos.model_file import load_model
from spos.readers import read_yaml_mapping
from spos.retrain import searched_arch
from tests.conftest import ROOT


def test_file_sha256_is_the_sha256_of_the_bytes(tmp_path):
    path = tmp_path / "blob.bin"
    data = bytes(range(256)) * 5000  # over one read chunk
    path.write_bytes(data)
    assert file_sha256(path) == hashlib.sha256(data).hexdigest()


def test_no_module_hashes_files_by_itself():
    # One helper: a second copy would drift (chunk size, truncation) from the first.
    offenders = []
    for folder in ("spos", "pipeline", "latency", "export"):
        for path in (ROOT / folder).rglob("*.py"):
            if path.name != "hashing.py" and "f.read(1 << 20)" in path.read_text():
                offenders.append(str(path.relative_to(ROOT)))
    assert offenders == []


# ---- one-line errors on edge input ---------------------------------------------------------

@pytest.mark.parametrize("text", ["inf", "-inf", "1e400", "1e400M", "nan", "infG"])
def test_budget_counts_must_be_finite(text):
    with pytest.raises(ValueError, match=rf"bad size '{text}'; expected a finite number"):
        parse_count(text)


def test_budget_count_suffixes_still_parse():
    assert (parse_count("330M"), parse_count("1.5k"), parse_count("2G"), parse_count("7")) == (
        330_000_000, 1500, 2_000_000_000, 7)


@pytest.mark.parametrize("loader", [load_checkpoint, load_supernet, load_model])
def test_empty_and_truncated_checkpoints_are_one_line_errors(tmp_path, loader):
    good = save_atomic({"format": "x", "w": torch.ones(4000)}, tmp_path / "good.pt").read_bytes()
    for size in (0, 1, len(good) // 2, len(good) - 1):
        path = tmp_path / f"cut{size}.pt"
        path.write_bytes(good[:size])
        with pytest.raises(ValueError, match=rf"{path.name}: not a readable .*checkpoint") as err:
            loader(path)
        assert "\n" not in str(err.value)


@pytest.mark.parametrize("digit", ["２", "²", "٣", "𝟚"])
def test_non_ascii_digits_are_not_arch_choices(digit):
    assert int("２") == 2  # why the check is needed: Python reads other scripts' digits
    with pytest.raises(ValueError, match=rf"item 1 is '{digit}'; expected 'OP' or 'OP:CHANNEL'"):
        Arch.parse(f"1,{digit},0")
    with pytest.raises(ValueError, match=rf"item 0 is '0:{digit}'"):
        Arch.parse(f"0:{digit},1:1")


def test_long_arch_strings_are_not_tried_as_file_names():
    text = ",".join(["1:2"] * 100)  # 399 characters: over NAME_MAX
    assert Arch.load(text) == Arch((1,) * 100, (2,) * 100)
    assert searched_arch(text) == Arch((1,) * 100, (2,) * 100)
    with pytest.raises(ValueError, match="item 0 is 'xxx"):
        Arch.load("x" * 300)


def test_duplicate_yaml_keys_are_refused_with_the_line(tmp_path):
    path = tmp_path / "space.yaml"
    path.write_text("name: a\nhead:\n  channels: 8\n  dropout: 0.1\n  channels: 16\n")
    with pytest.raises(ValueError, match=r"space.yaml: duplicate key 'channels' at line 5 \(first at line 3\)"):
        read_yaml_mapping(path, "search space file")
    path.write_text("stages:\n  - {channels: 8, channels: 8}\n")
    with pytest.raises(ValueError, match=r"duplicate key 'channels' at line 2 \(first at line 2\)"):
        read_yaml_mapping(path, "search space file")
    # merge keys may override what they merge, as YAML intends
    path.write_text("base: &b {lr: 0.1, steps: 4}\nrecipe:\n  <<: *b\n  lr: 0.2\n")
    assert read_yaml_mapping(path, "config")["recipe"] == {"lr": 0.2, "steps": 4}


def test_a_plot_that_fails_to_render_leaves_the_previous_file(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from spos.atomic import save_figure_atomic

    path = tmp_path / "curve.png"
    fig, ax = plt.subplots()
    ax.plot([0, 1], [0, 1])
    save_figure_atomic(fig, path)
    before = path.read_bytes()
    assert before.startswith(b"\x89PNG")

    class Interrupted(Exception):
        pass

    def interrupted_render(*args, **kwargs):
        raise Interrupted

    fig.savefig = interrupted_render
    with pytest.raises(Interrupted):
        save_figure_atomic(fig, path)
    plt.close(fig)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["curve.png"]
