"""Data-parallel training under ``torchrun``: fastai's ``DistributedTrainer`` (on Hugging Face Accelerate) with
the CPU/gloo fix it lacks, the rank helpers, each rank's random streams, and predictions gathered over all ranks.

    torchrun --standalone --nproc_per_node 2 -m affectlab.fit facechannel --profile quick ...

One process per GPU (or per CPU worker with the gloo backend). Each process builds the same Learner from the
same seed (identical initial weights; ``DistributedDataParallel`` also broadcasts rank 0's), then ``seed_rank``
gives ranks 1.. their own random streams (seed + rank) for augmentation and dropout: rank 0 keeps the one-process
streams. ``DistributedTrainer`` wraps the model in ``DistributedDataParallel`` (gradients all-reduced every step,
so every rank holds the same parameters) and each loader in a ``DistributedDL``, which broadcasts rank 0's
shuffled indices, pads them to a multiple of the ranks and gives each rank its slice.

Metrics: ``affectlab.metrics.HeadMetric`` keeps its batches through fastai's ``Learner.to_detach``, which under a
``DistributedDL`` gathers every rank's batch and cuts the padding off, so every metric logged during training
(and the best-model trackers that read them) is computed over the whole validation set, the same on every rank;
``gathered_predict`` does the same for the final scores. ``valid_loss`` is ``WholeSetLoss``'s: the loss of every
rank's batch at once, gathered likewise (a global batch of up to N x ``bs`` items, so a loss normalised per batch
can differ from one process's in the last digits).

Files: rank 0 writes the metrics, the epoch log, ``models/best.pth`` (fastai's ``save_model`` returns early on
other ranks) and the checkpoints, which hold every rank's random states (``affectlab.checkpoint``).
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


def init(cuda: bool) -> None:
    """Join the ``torchrun`` process group now (no-op with one process), through Accelerate's ``PartialState``
    as ``DistributedTrainer``'s ``Accelerator`` would later (nccl on GPUs, gloo on CPUs): the command agrees on
    its checks (a checkpoint seen by every rank) before any training."""
    if world_size() > 1:
        from accelerate import PartialState

        PartialState(cpu=not cuda)


def agree(value, what: str):
    """``value``, which must be the same on every rank: else an error on every rank (never a hang where one
    rank stops and the others wait for it), naming each rank's value."""
    values = all_gather(value)
    if any(v != values[0] for v in values):
        raise RuntimeError(f"the {len(values)} processes disagree on {what}: "
                           + ", ".join(f"rank {r}: {v}" for r, v in enumerate(values)))
    return value


def seed_rank(seed: int, dls) -> None:
    """Ranks 1.. draw their own random numbers (augmentation, dropout): torch's, NumPy's and Python's global
    generators and each loader's augmentation generator ``gen`` start from ``seed + rank``. Call it after the
    model is built (identical initial weights). Rank 0 keeps its streams, so it draws as a one-process run;
    the loaders' shuffling is rank 0's whatever the others draw (``DistributedDL`` broadcasts its order)."""
    r = rank()
    if r == 0:
        return
    from accelerate.utils import set_seed

    set_seed(seed + r)          # Python's, NumPy's, torch's (every device's)
    for dl in getattr(dls, "loaders", []):     # affectlab's augmentation generator, which Accelerate cannot know
        if isinstance(getattr(dl, "gen", None), torch.Generator):
            dl.gen.manual_seed(seed + r)


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
    tensors"), which fails without a GPU; over gloo they are broadcast from the CPU. During the fit the
    Recorder's validation loss is ``WholeSetLoss``'s. ``sync_bn``: BatchNorm statistics synchronised across GPUs
    (torch's SyncBatchNorm needs CUDA, so CPU processes keep per-rank statistics)."""
    from fastai.distributed import DistributedDL, DistributedTrainer

    class GlooSafeDL(DistributedDL):
        def _broadcast(self, t, rank):
            if torch.distributed.get_backend() == "nccl":
                return super()._broadcast(t, rank)
            t = torch.as_tensor(t, dtype=torch.long)
            torch.distributed.broadcast(t, rank)
            return t.tolist()

    WholeSetLoss = _whole_set_loss()

    class Trainer(DistributedTrainer):
        def _wrap_dl(self, dl):
            return dl if isinstance(dl, DistributedDL) else GlooSafeDL(dl, device=getattr(dl, "device", None))

        def before_fit(self):
            super().before_fit()
            self.fastai_loss, self.learn.recorder.loss = self.learn.recorder.loss, WholeSetLoss()

        def after_fit(self):
            super().after_fit()
            self.learn.recorder.loss = self.fastai_loss

    kw = {} if cuda else {"cpu": True}
    return Trainer(sync_bn=cuda, **kw)


def _whole_set_loss():
    from fastai.learner import Metric
    from fastai.torch_core import find_bs

    class WholeSetLoss(Metric):
        """``valid_loss`` under torchrun: the loss function applied to every rank's batch at once (gathered, the
        distributed sampler's padding cut off, by fastai's ``Learner.to_detach``), averaged over the batches by
        their items. fastai's ``AvgLoss`` averages each rank's loss of its own batch, the padding in; a loss
        over the batch (CCC, Pearson) then never sees the batch one process would. The same on every rank."""

        def reset(self):
            self.total, self.count = 0.0, 0

        def accumulate(self, learn):
            pred, yb = learn.to_detach(learn.pred, cpu=False), learn.to_detach(learn.yb, cpu=False)
            n = find_bs(yb)
            with torch.no_grad():
                self.total += float(learn.loss_func(pred, *yb).mean()) * n
            self.count += n

        @property
        def value(self):
            return self.total / self.count if self.count else None

        @property
        def name(self):
            return "loss"

    return WholeSetLoss


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


def rank_batches(dl) -> list[int]:
    """The sizes of the batches each rank draws from training loader ``dl`` in an epoch, as ``DistributedDL``
    makes them (the epoch's indices padded to a multiple of the ranks, each rank a slice, batched by ``dl.bs``,
    an incomplete last batch dropped when ``dl.drop_last``); one process: the loader's own batches."""
    sampler = getattr(dl, "sampler", None)
    n = len(sampler) if sampler is not None and getattr(dl, "shuffle", False) else dl.n
    full, rest = divmod(-(-n // world_size()), dl.bs)
    return [dl.bs] * full + ([rest] if rest and not dl.drop_last else [])
