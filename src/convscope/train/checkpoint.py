"""Checkpoints: one safetensors file per checkpoint, written atomically (temporary file in the same
folder, then ``os.replace``), holding

- the network's parameters under their own names (``conv1.w``), so :meth:`Network.load` reads a
  checkpoint as a network;
- the optimiser's state arrays as ``optim/<param>/<slot>``;
- JSON metadata: the architecture (``convscope.network``) and the trainer's state
  (``convscope.trainer``: epoch, history, the random generator's ``bit_generator.state``, the
  optimiser's hyper-parameters, early-stopping counters).
"""

from __future__ import annotations

import json

from convscope.errors import ConfigError
from convscope.nn.files import read_safetensors, write_safetensors

OPTIM = "optim/"


def save_checkpoint(path, net, optimizer, state: dict) -> None:
    """Write the network, the optimiser and the trainer ``state`` (JSON-able) to ``path``."""
    arrays = dict(net.state_dict())
    arrays.update({OPTIM + k: v for k, v in optimizer.state_arrays().items()})
    meta = {"convscope.network": net.to_json(),
            "convscope.trainer": json.dumps({**state, "optimizer": optimizer.hyper()})}
    write_safetensors(path, arrays, meta)


def _trainer_meta(path, meta) -> dict:
    if "convscope.trainer" not in meta:
        raise ConfigError(f"{path} is not a convscope training checkpoint")
    return json.loads(meta["convscope.trainer"])


def trainer_state(path) -> dict:
    """The trainer state saved in the checkpoint ``path`` (epoch, history, stopped_early, …),
    without building a network."""
    return _trainer_meta(path, read_safetensors(path)[1])


def load_checkpoint(path, net, optimizer) -> dict:
    """Restore ``net`` and ``optimizer`` from ``path``; return the trainer state saved with them."""
    arrays, meta = read_safetensors(path)
    state = _trainer_meta(path, meta)
    if json.loads(meta["convscope.network"])["layers"] != net.to_config()["layers"]:
        raise ConfigError(f"{path} holds a different architecture than the network being trained")
    net.load_state_dict({k: v for k, v in arrays.items() if not k.startswith(OPTIM)})
    optimizer.load_state_arrays(
        {k[len(OPTIM):]: v for k, v in arrays.items() if k.startswith(OPTIM)},
        state.pop("optimizer"))
    return state
