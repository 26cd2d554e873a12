"""Started by tests/test_distributed.py under torchrun (2 ranks, gloo): DDP training steps and a
resumed data-parallel run. Rank 0 saves what the test compares with a single process.

    python -m torch.distributed.run --standalone --nproc_per_node 2 tests/ddp_worker.py CFG OUT
"""
import json
import sys
from pathlib import Path

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from sdml.training.config import from_dict
from sdml.training.ddp import DDPStepper, train_ddp
from sdml.training.distributed import torchrun_env
from sdml.training.step import Stepper

STEPS = 2


def setup(cfg):
    """The model, optimiser, data and a plan of STEPS global batches, all from the run seed."""
    from sdml.data.batches import to_device
    from sdml.data.load import dataset_for
    from sdml.hierarchy.resolve import resolve_superclasses
    from sdml.training.step import plan_epoch
    from sdml.training.train import build_model, make_optimizer, resolve_mix_params, stream_seed

    data = to_device(dataset_for(cfg), "cpu")
    sc = resolve_superclasses(cfg.superclasses, cfg.wordnet_k)
    model = build_model(cfg, 100, torch.device("cpu"), "loop")
    optimizer = make_optimizer(cfg, model)
    gen = torch.Generator().manual_seed(stream_seed(cfg.seed, "epoch", 0))
    plan = plan_epoch(data.train_y, cfg.batch_size, STEPS, cfg.method, sc.of, gen,
                      resolve_mix_params(cfg), augment=True)
    return model, optimizer, data, plan


def steps(cfg, bn_train: bool, env=None) -> dict:
    """STEPS steps from the seed's weights: the (STEPS, K) losses and the peers' states after.

    ``bn_train`` False puts BatchNorm in eval mode: it normalises by its running statistics, the
    same on every rank, so no rank's statistics depend on how the batch was split.
    """
    model, optimizer, data, plan = setup(cfg)
    model.train(bn_train)
    if env is None:
        stepper = Stepper(model, optimizer, data, cfg.temperature, use_amp=False, compile=False)
    else:
        ddp = DistributedDataParallel(model, forward_sync_buffers=False)
        stepper = DDPStepper(ddp, optimizer, data, cfg.temperature, use_amp=False, compile=False,
                             env=env)
    losses = torch.stack([stepper(plan, i)[0] for i in range(STEPS)])
    return {"losses": losses, "peers": model.peer_state_dicts()}


def main(cfg_path: str, out: str) -> None:
    torch.set_num_threads(1)
    env = torchrun_env()
    cfg = from_dict(json.loads(Path(cfg_path).read_text()))
    dist.init_process_group("gloo")  # once: train_ddp below uses this group and keeps it
    result = {mode: steps(cfg, mode == "bn_train", env) for mode in ("bn_eval", "bn_train")}
    if env.is_main:
        torch.save(result, Path(out) / "steps.pt")
    # a data-parallel run, and the same run cut after epoch 1 and resumed on the same world size
    quiet = dict(progress=False, log=lambda *_: None, env=env)
    full = from_dict({**cfg.to_dict(), "ddp": True})
    train_ddp(full, Path(out) / "full", **quiet)
    train_ddp(from_dict({**full.to_dict(), "epochs": 1}), Path(out) / "resumed", **quiet)
    train_ddp(full, Path(out) / "resumed", resume=True, **quiet)
    dist.destroy_process_group()


if __name__ == "__main__":
    main(*sys.argv[1:])
