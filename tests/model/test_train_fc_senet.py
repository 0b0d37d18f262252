"""A few optimisation steps of the paper 1-2 models lower their losses; the paper-2 recipe's gradient
accumulation equals the large batch; FC-S trains on top of a trained FC."""
import fastai.callback.progress  # noqa: F401  (Learner.no_bar / no_logging)
import pytest
import torch
from torch import nn

from affectlab.models import FaceChannel, FaceChannelS, SENet50Classifier
from affectlab.models.facechannel import facechannel_loss
from affectlab.models.senet import senet_loss
from affectlab.recipes.senet import paper_learner, paper_sgd

pytestmark = pytest.mark.slow


def _frames(n=16, size=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, size, size, generator=g)
    y = {"expr": torch.arange(n) % 7, "va": torch.rand(n, 2, generator=g) * 2 - 1}
    y["expr"][0] = -1          # an unlabelled frame is masked, not taught "Neutral"
    y["va"][1] = -5.0
    return x, y


def _fit(model, loss_fn, x, y, steps=40, lr=3e-3):
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)
    model.train()
    first = None
    for _ in range(steps):
        loss = loss_fn(model(x), y)
        first = float(loss.detach()) if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        return first, float(loss_fn(model(x), y))


def test_facechannel_joint_overfits_a_tiny_batch():
    torch.manual_seed(0)
    x, y = _frames()
    model = FaceChannel(image_size=32, width=16, dropout=0.0)
    first, last = _fit(model, facechannel_loss(), x, y)
    assert last < 0.5 * first


@pytest.mark.parametrize("variant", ["FC_A", "FC_V", "FC_E"])
def test_single_task_variants_learn(variant):
    torch.manual_seed(0)
    x, y = _frames()
    model = FaceChannel.variant(variant, image_size=32, width=16, dropout=0.0)
    first, last = _fit(model, facechannel_loss(model.tasks), x, y)
    assert last < 0.7 * first


def test_facechannels_trains_on_a_trained_fc():
    torch.manual_seed(0)
    x, y = _frames(n=24)
    fc = FaceChannel(image_size=32, width=16, dropout=0.0)
    _fit(fc, facechannel_loss(), x, y, steps=40)
    fcs = FaceChannelS.from_facechannel(fc, dropout=0.0, freeze_trunk=True)
    clips = x.view(24, 1, 3, 32, 32).expand(24, 4, 3, 32, 32).contiguous()
    before = {k: v.clone() for k, v in fcs.trunk.state_dict().items()}
    first, last = _fit(fcs, facechannel_loss(), clips, y, steps=100, lr=1e-2)
    assert last < 0.7 * first
    for k, v in fcs.trunk.state_dict().items():   # the frozen FC trunk did not move
        assert torch.equal(v, before[k]), k


class _NoBNBody(nn.Module):
    """A body without BatchNorm: micro-batch statistics cannot differ from the large batch's."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.feature_dim = 8

    def forward(self, x):
        return self.net(x)


def _dls(x, y, bs):
    from fastai.data.core import DataLoaders
    from fastai.data.load import DataLoader

    items = [(x[i], {"expr": y[i]}) for i in range(len(x))]
    return DataLoaders(DataLoader(items, bs=bs, shuffle=False, drop_last=True),
                       DataLoader(items, bs=bs, shuffle=False))


def test_paper_recipe_accumulation_equals_the_large_batch(tmp_path, monkeypatch):
    monkeypatch.setenv("AFFECTLAB_HOME", str(tmp_path))
    torch.manual_seed(0)
    x = torch.randn(32, 3, 16, 16)
    # the same class mix in every micro-batch: a weighted cross-entropy normalises by the batch's summed
    # weights, so only then is the accumulated gradient exactly the large batch's
    y = (torch.arange(8) % 7).repeat(4)
    weights = torch.tensor([1.0, 2, 3, 4, 1, 1, 2])
    model = SENet50Classifier(_NoBNBody())
    reference = SENet50Classifier(_NoBNBody())
    reference.load_state_dict(model.state_dict())

    # the paper's recipe: 4 micro-batches of 8 accumulated to 32, lr 1e-6 body / 1e-3 head (here 0.05 / 0.5
    # so that one step moves the weights measurably)
    learn = paper_learner(_dls(x, y, 8), model, weights, micro_batch=8, batch=32, augment=False, device="cpu")
    with learn.no_bar(), learn.no_logging():
        learn.fit(1, lr=slice(0.05, 0.5))

    # the same step with one batch of 32 and PyTorch's SGD (momentum 0.9, coupled weight decay 0.005)
    opt = torch.optim.SGD([{"params": reference.body.parameters(), "lr": 0.05},
                           {"params": reference.head.parameters(), "lr": 0.5}], momentum=0.9, weight_decay=0.005)
    senet_loss(weights)(reference(x), {"expr": y}).backward()
    opt.step()
    for (name, a), b in zip(model.state_dict().items(), reference.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6, msg=name)


def test_senet_classifier_few_steps_lower_the_weighted_loss():
    from affectlab.models.backbones import Backbone

    torch.manual_seed(0)
    x, y = _frames(n=16, size=32)
    model = SENet50Classifier(Backbone("resnet18", width=8))
    loss_fn = senet_loss(torch.tensor([1.0, 22.9, 37.5, 50.7, 3.5, 5.8, 13.6]))
    opt = paper_sgd(list(model.parameters()), lr=0.05)
    model.train()
    losses = []
    for _ in range(15):
        loss = loss_fn(model(x), y)
        losses.append(float(loss))
        loss.backward()
        opt.step()
        opt.zero_grad()
    assert min(losses[-3:]) < 0.7 * losses[0]
