"""FaceRNET on tiny tensors: REC heads, the distribution-matching loss, the Mask layer, variable lengths."""
import math

import pytest
import torch

from affectlab.labels import AUS_17, EXPRESSIONS, au_given_expression
from affectlab.losses import distribution_matching_loss, pearson_loss
from affectlab.models.facernet import (REPRESENTATION_SLICES, REC, FaceRNet, FaceRNetLoss, MaskLayer, RECLoss,
                                       check_lengths, masked_pearson_loss, rec_representations)

TABLE = torch.tensor(au_given_expression(AUS_17))


def _features(b=3, t=12, d=26, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, t, d, generator=g)


def _pad_with(x, lengths, fill):
    x = x.clone()
    for i, n in enumerate(lengths.tolist()):
        x[i, n:] = fill
    return x


# --- REC ------------------------------------------------------------------------------------------------

def test_rec_heads_and_representations():
    rec = REC(width=4)
    out = rec(torch.randn(5, 3, 32, 32))
    assert out["va"].shape == (5, 2) and out["expr"].shape == (5, 7) and out["au"].shape == (5, 17)
    assert out["va"].abs().max() <= 1
    r = rec_representations(out)
    assert r.shape == (5, 26)
    assert torch.allclose(r[:, REPRESENTATION_SLICES["expr"]].sum(-1), torch.ones(5))
    assert torch.equal(r[:, REPRESENTATION_SLICES["va"]], out["va"])


def test_dm_loss_matches_hand_computed_example():
    # p(expr) = ½ Happiness + ½ Sadness; every AU predicted at 0.8.
    logits = torch.full((1, 7), -1e4)
    logits[0, EXPRESSIONS.index("Happiness")] = 0.0
    logits[0, EXPRESSIONS.index("Sadness")] = 0.0
    au_logits = torch.full((1, 17), math.log(0.8 / 0.2))
    # q(AU) by hand from Du et al.'s table: Happiness 12, 25 [6: .51]; Sadness 4, 15 [1: .60, 6: .50, 11: .26, 17: .67]
    q = {"AU12": 0.5, "AU25": 0.5, "AU6": 0.5 * 0.51 + 0.5 * 0.50, "AU4": 0.5, "AU15": 0.5,
         "AU1": 0.30, "AU11": 0.13, "AU17": 0.335}
    expected = sum(-(q.get(au, 0.0) * math.log(0.8) + (1 - q.get(au, 0.0)) * math.log(0.2)) for au in AUS_17) / 17
    got = distribution_matching_loss(logits, au_logits, TABLE)
    assert got.item() == pytest.approx(expected, rel=1e-5)


def test_dm_loss_is_smallest_at_the_pseudo_predictions():
    g = torch.Generator().manual_seed(1)
    expr_logits = torch.randn(6, 7, generator=g)
    q = (expr_logits.softmax(-1) @ TABLE).clamp(1e-6, 1 - 1e-6)
    at_q = distribution_matching_loss(expr_logits, torch.logit(q), TABLE)
    # At the optimum the soft-target BCE equals the binary entropy of q: the quantity eq. (2) prints
    # (-q log q, without the (1-q) term and without the predicted p_AU). Away from q it is larger.
    entropy = -(q * q.log() + (1 - q) * (1 - q).log()).mean()
    assert at_q.item() == pytest.approx(entropy.item(), abs=1e-4)
    for k in range(5):
        noise = 0.5 * torch.randn(6, 17, generator=g)
        assert distribution_matching_loss(expr_logits, torch.logit(q) + noise, TABLE) > at_q
    # and the gradient w.r.t. the AU logits vanishes there
    au = torch.logit(q).requires_grad_()
    distribution_matching_loss(expr_logits, au, TABLE).backward()
    assert au.grad.abs().max() < 1e-6


def test_rec_loss_masks_each_term_to_its_labelled_frames():
    torch.manual_seed(0)
    preds = {"va": torch.tanh(torch.randn(4, 2)), "expr": torch.randn(4, 7), "au": torch.randn(4, 17)}
    y = {"va": torch.tensor([[0.1, 0.2], [-0.3, 0.5], [-5.0, -5.0], [-5.0, -5.0]]),
         "expr": torch.tensor([3, -1, -1, 4]),
         "au": torch.cat([torch.full((2, 17), -1.0), torch.randint(0, 2, (2, 17)).float()])}
    loss = RECLoss()
    base = loss(preds, y)
    assert set(loss.last) == {"ccc", "ce", "bce", "dm"} and torch.isfinite(base)
    # Changing the expression logits of a frame without an expression label moves only the DM term.
    preds2 = {**preds, "expr": preds["expr"].clone()}
    preds2["expr"][1] += torch.randn(7)
    loss(preds2, y)
    ce_before = RECLoss()
    ce_before(preds, y)
    assert loss.last["ce"] == pytest.approx(ce_before.last["ce"])
    assert loss.last["dm"] != pytest.approx(ce_before.last["dm"])
    # No labels at all: only L_DM, still finite and differentiable.
    none = {"va": torch.full((4, 2), -5.0), "expr": torch.full((4,), -1), "au": torch.full((4, 17), -1.0)}
    p = {k: v.clone().requires_grad_() for k, v in preds.items()}
    total = loss(p, none)
    total.backward()
    assert loss.last["ccc"] == loss.last["ce"] == loss.last["bce"] == 0.0 and loss.last["dm"] > 0
    assert p["au"].grad.abs().sum() > 0 and p["expr"].grad.abs().sum() > 0
    assert RECLoss(dm_weight=0)(preds, none).item() == 0.0


# --- Mask layer and FaceRNet ----------------------------------------------------------------------------

def test_mask_layer_keeps_first_l_and_zeroes_the_rest_even_nan():
    h = torch.randn(3, 5, 2)
    h[0, 2:] = float("nan")
    out = MaskLayer()(h, torch.tensor([2, 5, 1]))
    assert torch.equal(out[0, :2], h[0, :2]) and (out[0, 2:] == 0).all()
    assert torch.equal(out[1], h[1])
    assert torch.equal(out[2, :1], h[2, :1]) and (out[2, 1:] == 0).all()


@pytest.mark.parametrize("rnn", ["gru", "lstm"])
@pytest.mark.parametrize("fill", [0.0, 7.0, float("nan"), "random"])
def test_output_does_not_depend_on_padding_content(rnn, fill):
    torch.manual_seed(0)
    model = FaceRNet(t=12, rnn=rnn, hidden=8, dense=4).train()
    lengths = torch.tensor([12, 5, 1])
    x = _features(3, 12)
    ref = model(_pad_with(x, lengths, 0.0), lengths)["intensity"]
    padded = _pad_with(x, lengths, 0.0)
    if fill == "random":
        for i, n in enumerate(lengths.tolist()):
            padded[i, n:] = torch.randn_like(padded[i, n:]) * 100
    else:
        padded = _pad_with(x, lengths, fill)
    out = model(padded, lengths)["intensity"]
    assert torch.equal(out, ref)
    out.sum().backward()  # NaN padding must not poison the gradients either
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_variable_lengths_in_one_batch_equal_each_video_alone():
    torch.manual_seed(0)
    model = FaceRNet(t=10, hidden=8, dense=4)
    lengths = torch.tensor([3, 10, 7, 1])
    x = _features(4, 10)
    batch = model(x, lengths)["intensity"]
    for i in range(4):
        alone = model(x[i:i + 1], lengths[i:i + 1])["intensity"]
        assert torch.allclose(batch[i], alone[0], atol=1e-6)


def test_dense_weights_of_unrouted_steps_get_no_gradient():
    model = FaceRNet(t=6, hidden=4, dense=3)
    model(_features(2, 6), torch.tensor([2, 4]))["intensity"].sum().backward()
    grad = model.dense[1].weight.grad.view(3, 6, 4)  # [dense, t, hidden]
    assert grad[:, :4].abs().sum() > 0
    assert (grad[:, 4:] == 0).all()  # steps beyond the longest video in the batch: never routed


def test_end_to_end_on_frames_ignores_padding_frames_even_in_train_mode():
    torch.manual_seed(0)
    model = FaceRNet(t=6, hidden=8, dense=4, rec=REC(width=4)).train()
    lengths = torch.tensor([6, 2])
    frames = torch.randn(2, 6, 3, 24, 24)
    a = model(_pad_with(frames, lengths, 0.0), lengths)["intensity"]
    b = model(_pad_with(frames, lengths, 3.0), lengths)["intensity"]
    assert torch.allclose(a, b, atol=1e-6)  # BatchNorm statistics come from the 8 true frames only
    assert a.shape == (2, 7)


def test_fixed_length_baseline_truncates_or_loops():
    model = FaceRNet(t=8, hidden=4, dense=3, length_mode="fixed", fixed_len=5)
    x = torch.arange(8.0)[None, :, None].expand(2, 8, 26)
    idx = model._fixed_length(x, torch.tensor([3, 8]))[..., 0]
    assert idx[0].tolist() == [0, 1, 2, 0, 1] and idx[1].tolist() == [0, 1, 2, 3, 4]
    assert model(_features(2, 8), torch.tensor([3, 8]))["intensity"].shape == (2, 7)


def test_task_subsets_feed_the_rnn():
    assert FaceRNet(t=4, tasks=("va",)).rnn.input_size == 2
    assert FaceRNet(t=4, tasks=("au", "expr")).rnn.input_size == 24
    assert FaceRNet(t=4, tasks=None, in_features=512).rnn.input_size == 512
    with pytest.raises(ValueError, match="tasks"):
        FaceRNet(t=4, tasks=("pose",))


@pytest.mark.parametrize("lengths, msg", [([0, 3], r"\[0\]"), ([3, 9], r"\[1\]"), ([-1, 2], "lengths")])
def test_bad_lengths_are_refused_naming_the_items(lengths, msg):
    model = FaceRNet(t=8, hidden=4, dense=3)
    with pytest.raises(ValueError, match=msg):
        model(_features(2, 8), torch.tensor(lengths))
    with pytest.raises(ValueError, match="padded to"):
        model(_features(2, 9), torch.tensor([2, 3]))


def test_check_lengths_accepts_the_bounds():
    check_lengths(torch.tensor([1, 8]), 8)


# --- losses -----------------------------------------------------------------------------------------------

def test_masked_pearson_matches_pearson_without_missing_values():
    g = torch.Generator().manual_seed(0)
    p, y = torch.rand(9, 7, generator=g), torch.rand(9, 7, generator=g)
    assert masked_pearson_loss(p, y).item() == pytest.approx(pearson_loss(p, y).item(), abs=1e-6)
    assert masked_pearson_loss(y, y).item() == pytest.approx(0.0, abs=1e-6)


def test_missing_reaction_value_is_left_out_of_its_column_only():
    g = torch.Generator().manual_seed(0)
    p, y = torch.rand(6, 7, generator=g), torch.rand(6, 7, generator=g)
    y_nan = y.clone()
    y_nan[2, 3] = float("nan")
    got = masked_pearson_loss(p, y_nan)
    cols = [pearson_loss(p[:, k], y[:, k]) if k != 3 else
            pearson_loss(p[[0, 1, 3, 4, 5], k], y[[0, 1, 3, 4, 5], k]) for k in range(7)]
    assert got.item() == pytest.approx(sum(c.item() for c in cols) / 7, abs=1e-6)
    assert torch.isfinite(FaceRNetLoss("mse")({"intensity": p}, {"intensity": y_nan}))
    with pytest.raises(ValueError):
        FaceRNetLoss("mae")
