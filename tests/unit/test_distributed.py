"""``affectlab.distributed`` and the checkpoint's agreement between ranks, without launching processes:
SyncBatchNorm keeps frozen stages frozen, each rank's random streams, the batches a rank draws, and the one
decision every rank takes from their views of a checkpoint."""
from pathlib import Path

import pytest
import torch
from torch import nn

from affectlab import distributed as dist
from affectlab.checkpoint import resume_point


def _norms(module: nn.Module) -> list[nn.Module]:
    return [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


def _frozen_norms(model: nn.Module) -> list[nn.Module]:
    """The model's norms whose parameters are frozen, found in its module tree as it is now."""
    return [m for m in _norms(model) if not m.weight.requires_grad]


def _model(name: str):
    """A course model with frozen stages and an input batch for it."""
    from affectlab.models.backbones import Backbone
    from affectlab.models.scan import SCANCCI
    from affectlab.models.temporal_stat import TemporalStatNet

    torch.manual_seed(0)
    if name == "temporal":       # ResNet's stages frozen but its last (the paper fine-tunes conv5_x)
        return TemporalStatNet(6, feature_dim=512, backbone=Backbone("resnet18")), torch.randn(2, 2, 3, 32, 32)
    return SCANCCI("resnet18", freeze_through="conv4_x"), torch.randn(2, 3, 64, 64)


@pytest.mark.parametrize("name", ["temporal", "scan"])
def test_sync_batchnorm_keeps_frozen_stages_frozen(name):
    model, x = _model(name)
    frozen = _frozen_norms(model)
    before = [(m.running_mean.clone(), m.running_var.clone()) for m in frozen]
    assert frozen and len(frozen) < len(_norms(model))
    # what fastai's DistributedTrainer does with sync_bn (on GPUs), then fastai's train mode at each epoch
    model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    model.train()
    assert all(isinstance(m, nn.SyncBatchNorm) for m in _norms(model))
    frozen = _frozen_norms(model)
    assert len(frozen) == len(before) and not any(m.training for m in frozen)
    trainable = [m for m in _norms(model) if m.weight.requires_grad]
    assert trainable and all(m.training for m in trainable)
    trained_before = [m.running_mean.clone() for m in trainable]
    model(x)                    # (no process group: SyncBatchNorm computes as BatchNorm on the CPU)
    for m, (mean, var) in zip(frozen, before):
        assert torch.equal(m.running_mean, mean) and torch.equal(m.running_var, var)
    assert all(not torch.equal(a, m.running_mean) for a, m in zip(trained_before, trainable))


def test_seed_rank_gives_ranks_their_own_streams_and_keeps_rank0s(monkeypatch):
    from affectlab.data.loaders import tensor_dls

    def draws(rank: int):
        monkeypatch.setenv("RANK", str(rank))
        monkeypatch.setenv("WORLD_SIZE", "2")
        torch.manual_seed(0)
        dls = tensor_dls(((torch.zeros(8, 2),), torch.zeros(8)), ((torch.zeros(4, 2),), torch.zeros(4)), bs=4)
        weights = nn.Linear(2, 2).weight.detach().clone()          # built before: the same on every rank
        dist.seed_rank(0, dls)
        return weights, torch.rand(3), torch.rand(3, generator=dls.train.gen)

    w0, t0, g0 = draws(0)
    w1, t1, g1 = draws(1)
    assert torch.equal(w0, w1)
    assert not torch.equal(t0, t1) and not torch.equal(g0, g1)
    torch.manual_seed(0)
    nn.Linear(2, 2)
    assert torch.equal(t0, torch.rand(3))          # rank 0 draws as one process does


@pytest.mark.parametrize("n, bs, drop_last, world, expected", [
    (98, 32, False, 2, [32, 17]),        # 49 a rank
    (3, 16, False, 2, [2]),              # padded to 4
    (6, 4, True, 2, []),                 # 3 a rank, incomplete batches dropped: no step
    (7, 4, False, 1, [4, 3]),
])
def test_rank_batches(monkeypatch, n, bs, drop_last, world, expected):
    from affectlab.data.loaders import tensor_dls

    monkeypatch.setenv("WORLD_SIZE", str(world))
    dls = tensor_dls(((torch.zeros(n, 2),), torch.zeros(n)), ((torch.zeros(2, 2),), torch.zeros(2)), bs=bs,
                     drop_last=drop_last)
    assert dist.rank_batches(dls.train) == expected


def test_resume_point_is_rank0s_view_or_an_error_on_every_rank():
    f = Path("checkpoints/learner00-x.pt")
    assert resume_point([None, None], f) is None
    assert resume_point([(1, False)] * 3, f) == (1, False)
    # every rank raises the same error from the same gathered views: none waits for the others
    for views, says in [([(1, False), None], "rank 1 sees no usable checkpoint"),
                        ([None, (2, False)], "rank 1 would resume after epoch 2"),
                        ([(1, False), (1, False), (2, True)], "rank 2 would resume after epoch 2")]:
        with pytest.raises(RuntimeError, match=says):
            resume_point(views, f)


def test_agree_in_one_process():
    assert dist.agree(["a.pt"], "the checkpoints") == ["a.pt"]
