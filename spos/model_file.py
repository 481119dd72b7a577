"""``model.pt``: a deployable static network, self-describing.

Holds the arch and the space (`StaticNet.describe`), the weights, the
resolved training config (its ``data`` section tells export which real images
to check parity on) and the final metrics. Plain tensors and containers only,
so it loads with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from spos.arch import Arch
from spos.checkpoint import first_line, load_checkpoint, save_atomic
from spos.network import StaticNet
from spos.space import SearchSpace

MODEL_FORMAT = "spos-static-net/1"


@dataclass(frozen=True)
class LoadedModel:
    net: StaticNet  # in eval mode
    arch: Arch
    space: SearchSpace
    config: dict[str, Any]  # TrainConfig.to_dict() of the run that produced the weights
    metrics: dict[str, Any]

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return (self.space.in_channels, self.space.input_size, self.space.input_size)


def save_model(path: str | Path, net: StaticNet, config: dict[str, Any], metrics: dict[str, Any]) -> Path:
    return save_atomic(
        {"format": MODEL_FORMAT, **net.describe(), "state_dict": net.state_dict(), "config": config,
         "metrics": metrics},
        path,
    )


def load_model(path: str | Path) -> LoadedModel:
    """Rebuild the network of a ``model.pt``; refuses other checkpoints (a supernet, a foreign file) by name."""
    data = load_checkpoint(path, "model checkpoint")
    if data.get("format") != MODEL_FORMAT:
        found = f"format {data['format']!r}" if "format" in data else f"keys {sorted(data)[:5]}"
        raise ValueError(
            f"{path}: not a model checkpoint (found {found}); expected the model.pt written by spos retrain"
        )
    try:
        net = StaticNet.from_description({"space": data["space"], "arch": data["arch"]})
        net.load_state_dict(data["state_dict"])
    except (KeyError, RuntimeError) as exc:
        raise ValueError(f"{path}: model checkpoint is damaged ({first_line(exc)})") from None
    return LoadedModel(net.eval(), net.arch, net.space, data.get("config") or {}, data.get("metrics") or {})
