"""Data-parallel training under ``torchrun``: fastai's ``DistributedTrainer`` (on Hugging Face Accelerate) with
the CPU/gloo fix it lacks, the rank helpers, and predictions gathered over all ranks before any metric.

    torchrun --standalone --nproc_per_node 2 -m affectlab.fit facechannel --profile quick ...

One process per GPU (or per CPU worker with the gloo backend). Each process builds the same Learner from the
same seed; ``DistributedTrainer`` wraps the model in ``DistributedDataParallel`` (gradients all-reduced every
step, so every rank holds the same parameters) and each loader in a ``DistributedDL``, which broadcasts rank
0's shuffled indices and gives each rank its slice. fastai's validation metrics gather every rank's
predictions (``to_detach(gather=True)``) before computing; ``gathered_predict`` does the same for the final
scores. Only rank 0 writes files (fastai's ``save_model`` already returns early on other ranks).
"""
from __future__ import annotations

import os

import torch


def world_size() -> int:
    """The number of processes ``torchrun`` started (1 without it)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def rank() -> int:
    """This process's rank (0 without ``torchrun``)."""
    return int(os.environ.get("RANK", "0"))


def is_main() -> bool:
    return rank() == 0


def local_device(device: torch.device) -> torch.device:
    """Under ``torchrun`` on GPUs each process takes the GPU of its ``LOCAL_RANK``."""
    if device.type == "cuda" and world_size() > 1:
        idx = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(idx)
        return torch.device("cuda", idx)
    return device


def trainer(cuda: bool):
    """fastai's ``DistributedTrainer`` with loaders that also work over gloo (CPU processes).

    fastai's ``DistributedDL._broadcast`` moves the indices to CUDA unconditionally ("nccl only works with cuda
    tensors"), which fails without a GPU; over gloo they are broadcast from the CPU. That override is all that
    is added here. ``sync_bn``: BatchNorm statistics synchronised across GPUs (torch's SyncBatchNorm needs
    CUDA, so CPU processes keep per-rank statistics)."""
    from fastai.distributed import DistributedDL, DistributedTrainer

    class GlooSafeDL(DistributedDL):
        def _broadcast(self, t, rank):
            if torch.distributed.get_backend() == "nccl":
                return super()._broadcast(t, rank)
            t = torch.as_tensor(t, dtype=torch.long)
            torch.distributed.broadcast(t, rank)
            return t.tolist()

    class Trainer(DistributedTrainer):
        def _wrap_dl(self, dl):
            return dl if isinstance(dl, DistributedDL) else GlooSafeDL(dl, device=getattr(dl, "device", None))

    kw = {} if cuda else {"cpu": True}
    return Trainer(sync_bn=cuda, **kw)


def attach(learn, cuda: bool):
    """Make ``learn`` train data-parallel across the ``torchrun`` processes (no-op with one process).
    Returns the callback (to ``detach`` later) or None."""
    if world_size() <= 1:
        return None
    from fastai.callback.progress import ProgressCallback

    cb = trainer(cuda)
    learn.add_cb(cb)
    if not is_main():                       # one progress bar and one epoch table: rank 0's
        learn.remove_cb(ProgressCallback)
    return cb


def all_gather(obj) -> list:
    """Every rank's ``obj`` (picklable), in rank order; ``[obj]`` with one process."""
    if world_size() <= 1 or not torch.distributed.is_initialized():
        return [obj]
    out = [None] * world_size()
    torch.distributed.all_gather_object(out, obj)
    return out


def barrier() -> None:
    if world_size() > 1 and torch.distributed.is_initialized():
        torch.distributed.barrier()


def gathered_predict(model, dl) -> tuple[dict, dict]:
    """``train.predict`` over the whole (unshuffled) loader ``dl``, the batches shared out among the ranks
    (batch i to rank i mod N), then gathered and put back in order on every rank — so the metrics are computed
    once over the whole evaluation set, never averaged per rank."""
    from affectlab.train import predict

    n, r = world_size(), rank()
    if n <= 1 or not torch.distributed.is_initialized():
        return predict(model, dl)
    # Every rank iterates the loader (batches are cheap to gather) and runs the model on its own share only.
    mine = [(i, predict(model, [b])) for i, b in enumerate(dl) if i % n == r]
    parts = sorted((p for rank_parts in all_gather(mine) for p in rank_parts), key=lambda p: p[0])
    preds = {k: torch.cat([p[1][0][k] for p in parts]) for k in parts[0][1][0]}
    targs = {k: torch.cat([p[1][1][k] for p in parts]) for k in parts[0][1][1]}
    return preds, targs
