"""The two fits on cached features that moved from plain loops onto the recipes' Learners train exactly as
the loops did: SE-ResNet's ablation head (``senet.train_head``: the paper's SGD, 4 accumulated micro-batches
drawn with replacement) and FaceRNET's REC heads (``facernet.fit_rec_heads``: Adam, a fresh permutation per
epoch). Each reference below is the plain loop written here, independent of the Learner code."""
from __future__ import annotations

import copy

import pytest
import torch

from affectlab.models.facernet import REC, RECLoss
from affectlab.models.senet import FeatureHead, senet_loss
from affectlab.recipes import facernet, senet
from affectlab.train import fit


def test_the_ablation_head_trains_as_the_plain_loop():
    torch.manual_seed(0)
    feats, y, w = torch.randn(300, 12), torch.randint(0, 7, (300,)), torch.rand(7) + 0.5
    S = {"micro_batch": 16, "head_steps": 40, "head_lr": 0.05}

    g = torch.Generator().manual_seed(3)
    torch.manual_seed(3)
    ref = torch.nn.Linear(12, 7)
    mean, std = feats.mean(0), feats.std(0) + 1e-6
    opt = senet.paper_sgd(list(ref.parameters()), lr=0.05)
    loss = senet_loss(w)
    for _ in range(S["head_steps"]):
        for _ in range(4):
            idx = torch.randint(0, len(y), (16,), generator=g)
            (loss({"expr": ref((feats[idx] - mean) / std)}, {"expr": y[idx]}) / 4).backward()
        opt.step()
        opt.zero_grad()

    torch.manual_seed(3)
    head = FeatureHead(feats)
    fit(senet.learner(S, head, senet.head_dls(S, (feats, y), (feats[:20], y[:20]), 3), "cpu", 3, class_weights=w),
        quiet=True)
    torch.testing.assert_close(head.fc.weight, ref.weight, rtol=0, atol=0)
    torch.testing.assert_close(head.fc.bias, ref.bias, rtol=0, atol=0)
    assert not torch.equal(ref.weight, torch.nn.Linear(12, 7).weight)   # it trained


class _Identity(torch.nn.Module):
    feature_dim = 10

    def forward(self, x):
        return x


def test_the_rec_heads_train_as_the_plain_loop():
    torch.manual_seed(1)
    z = torch.randn(333, 10)
    y = {"expr": torch.randint(-1, 7, (333,)), "va": torch.rand(333, 2) * 2 - 1,
         "au": (torch.rand(333, 17) > 0.7).float()}
    rec = REC(trunk=_Identity())
    S = {"head_epochs": 4, "head_lr": 3e-3, "head_batch_size": 64}

    ref = copy.deepcopy(rec)
    g = torch.Generator().manual_seed(2)
    torch.manual_seed(2)
    for h in ref.heads.values():
        h.reset_parameters()
    loss_fn, opt = RECLoss(1.0), torch.optim.Adam(ref.heads.parameters(), lr=3e-3)
    for _ in range(4):
        for idx in torch.randperm(333, generator=g).split(64):
            loss = loss_fn(ref.heads_forward(z[idx]), {k: v[idx] for k, v in y.items()})
            opt.zero_grad()
            loss.backward()
            opt.step()

    new = facernet.fit_rec_heads(S, copy.deepcopy(rec), (z, y), (z[:50], {k: v[:50] for k, v in y.items()}), 1.0, 2)
    for a, b in zip(new.heads.parameters(), ref.heads.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_a_rec_heads_fit_resumes_exactly(tmp_path, monkeypatch):
    """Killed after its 2nd epoch under a checkpoint folder and run again, the REC heads' fit (a PyTorch Adam in
    fastai's wrapper, rows drawn by ``IndexDraws``) ends on the uninterrupted fit's weights."""
    from fastai.callback.core import Callback

    import affectlab.train as train
    from affectlab.checkpoint import checkpointing

    torch.manual_seed(1)
    z = torch.randn(200, 10)
    y = {"expr": torch.randint(-1, 7, (200,)), "va": torch.rand(200, 2) * 2 - 1,
         "au": (torch.rand(200, 17) > 0.7).float()}
    S = {"head_epochs": 4, "head_lr": 3e-3, "head_batch_size": 64}
    rec = REC(trunk=_Identity())
    valid = (z[:40], {k: v[:40] for k, v in y.items()})
    whole = facernet.fit_rec_heads(S, copy.deepcopy(rec), (z, y), valid, 1.0, 2)

    class Kill(Callback):
        def before_epoch(self):
            if self.epoch == 2:
                raise KeyboardInterrupt

    real_fit = train.fit
    monkeypatch.setattr(train, "fit", lambda learn, cbs=(), quiet=False: real_fit(learn, [*cbs, Kill()], quiet))
    with checkpointing(tmp_path, {"test": "rec heads"}):
        with pytest.raises(KeyboardInterrupt):
            facernet.fit_rec_heads(S, copy.deepcopy(rec), (z, y), valid, 1.0, 2)
    monkeypatch.setattr(train, "fit", real_fit)
    assert list(tmp_path.rglob("*.pt"))
    with checkpointing(tmp_path, {"test": "rec heads"}):
        resumed = facernet.fit_rec_heads(S, copy.deepcopy(rec), (z, y), valid, 1.0, 2)
    for a, b in zip(resumed.heads.parameters(), whole.heads.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
