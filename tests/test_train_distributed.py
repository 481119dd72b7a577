"""The same training under torchrun: 2 CPU processes with gloo keep identical weights."""

from __future__ import annotations

import os
import subprocess
import sys

import torch

from spos.checkpoint import load_checkpoint
from tests.conftest import ROOT
from tests.test_train import tiny_config

def test_two_gloo_processes_train_identical_weights(tmp_path):
    config = tiny_config(tmp_path / "cfg", steps=6, device="cpu")
    script = tmp_path / "worker.py"
    script.write_text(
        "import os, sys, torch\n"
        "from pathlib import Path\n"
        "import spos.train as train\n"
        "from spos.config import load_train_config\n"
        "models = []\n"
        "original = train.train_network\n"
        "def keep(model, *args, **kwargs):\n"
        "    models.append(model)\n"
        "    return original(model, *args, **kwargs)\n"
        "train.train_network = keep\n"
        "out = Path(sys.argv[2])\n"
        "result = train.train_supernet(load_train_config(sys.argv[1]), out)\n"
        "torch.save(models[0].state_dict(), out / f\"rank{os.environ['RANK']}.pt\")\n"
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    run = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         str(script), str(config), str(tmp_path / "run")],
        env=env, cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    rank0 = torch.load(tmp_path / "run" / "rank0.pt", weights_only=True)
    rank1 = torch.load(tmp_path / "run" / "rank1.pt", weights_only=True)
    for name, tensor in rank0.items():
        assert torch.equal(tensor, rank1[name]), name
    # rank 0 wrote the checkpoint: 6 steps of a global batch of 32, 16 per process
    state = load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    assert state["step"] == 6 and state["world_size"] == 2
    assert all(torch.equal(state["model"][k], rank0[k]) for k in rank0)
    assert (tmp_path / "run" / "supernet.pt").is_file()
