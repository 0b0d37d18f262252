import pytest
import torch

from affectlab.labels import au_given_expression
from affectlab.losses import (MultiTaskLoss, ccc_loss, distribution_matching_loss, masked_bce, masked_ccc_loss,
                              masked_cross_entropy, pearson_loss)


def test_ccc_and_pearson_losses_are_zero_at_perfect_agreement():
    x = torch.linspace(-1, 1, 50)[:, None].repeat(1, 2)
    assert float(ccc_loss(x, x)) == pytest.approx(0.0, abs=1e-6)
    assert float(pearson_loss(2 * x + 1, x)) == pytest.approx(0.0, abs=1e-6)
    assert float(ccc_loss(2 * x + 1, x)) > 0.4  # CCC punishes scale and shift, Pearson does not


def test_invalid_labels_are_masked_not_zero_filled():
    logits = torch.randn(6, 7, requires_grad=True)
    target = torch.tensor([1, -1, 2, -1, 3, 4])
    loss = masked_cross_entropy(logits, target)
    ref = torch.nn.functional.cross_entropy(logits[[0, 2, 4, 5]], target[[0, 2, 4, 5]])
    assert float(loss) == pytest.approx(float(ref))
    loss.backward()
    assert logits.grad[1].abs().sum() == 0 and logits.grad[3].abs().sum() == 0
    # a batch with no label at all is a zero that still back-propagates
    none = masked_cross_entropy(logits, torch.full((6,), -1))
    assert float(none) == 0.0 and none.requires_grad


def test_masked_va_and_au():
    pred = torch.tensor([[0.1, 0.2], [0.5, 0.4], [0.9, -0.3], [0.0, 0.0]])
    target = torch.tensor([[0.1, 0.2], [-5.0, -5.0], [0.8, -0.2], [0.1, 0.1]])
    keep = [0, 2, 3]
    assert float(masked_ccc_loss(pred, target)) == pytest.approx(float(ccc_loss(pred[keep], target[keep])))
    au_logits = torch.randn(3, 4)
    au_t = torch.tensor([[1, 0, -1, 1], [-1, -1, -1, -1], [0, 1, 1, 0]]).float()
    keep = au_t != -1
    ref = torch.nn.functional.binary_cross_entropy_with_logits(au_logits[keep], au_t[keep])
    assert float(masked_bce(au_logits, au_t)) == pytest.approx(float(ref))


def test_multitask_loss_sums_weighted_terms_and_names_missing_heads():
    preds = {"expr": torch.randn(4, 7), "va": torch.tanh(torch.randn(4, 2))}
    y = {"expr": torch.tensor([0, 1, 2, 3]), "va": torch.rand(4, 2)}
    loss = MultiTaskLoss(expr=(1.0, masked_cross_entropy), va=(0.4, masked_ccc_loss))
    total = loss(preds, y)
    assert float(total) == pytest.approx(loss.last["expr"] + 0.4 * loss.last["va"], rel=1e-5)
    with pytest.raises(KeyError, match="au"):
        MultiTaskLoss(au=(1.0, masked_bce))(preds, y)


def test_distribution_matching_hand_example():
    table = torch.tensor(au_given_expression())           # [7, 17]
    expr_logits = torch.log(torch.tensor([[0.5, 0, 0, 0, 0.5, 0, 0]]) + 1e-12)
    q = 0.5 * table[0] + 0.5 * table[4]                    # Neutral + Happiness
    assert q[15].item() == pytest.approx(0.5)              # AU25 (index 15) from Happiness
    au_logits = torch.zeros(1, 17)                         # p = 0.5 everywhere
    expected = -(q * torch.log(torch.tensor(0.5)) + (1 - q) * torch.log(torch.tensor(0.5))).mean()
    assert float(distribution_matching_loss(expr_logits, au_logits, table)) == pytest.approx(float(expected), abs=1e-5)
    # as a soft-target BCE it is smallest when the AU probabilities equal the pseudo-predictions
    best = torch.logit(q.clamp(1e-4, 1 - 1e-4))[None]
    assert distribution_matching_loss(expr_logits, best, table) < distribution_matching_loss(expr_logits, au_logits, table)


def test_predict_handles_one_head_and_many_heads():
    from fastai.data.core import DataLoaders
    from fastai.data.load import DataLoader

    from affectlab.train import make_learner, predict

    class DS(torch.utils.data.Dataset):
        def __len__(self):
            return 10

        def __getitem__(self, i):
            return torch.full((3,), float(i)), {"expr": torch.tensor(i % 7)}

    for heads in (["expr"], ["expr", "va"]):
        class Net(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.lin = torch.nn.Linear(3, 7)

            def forward(self, x):
                return {h: self.lin(x) for h in heads}

        dls = DataLoaders(DataLoader(DS(), bs=4), DataLoader(DS(), bs=4))
        learn = make_learner(dls, Net(), lambda p, y: masked_cross_entropy(p["expr"], y["expr"]), device="cpu")
        preds, targs = predict(learn)
        assert sorted(preds) == sorted(heads) and preds["expr"].shape == (10, 7)
        assert targs["expr"].tolist() == [i % 7 for i in range(10)]  # dataset order
