"""Distillation losses against plain float64 reference formulas (numpy)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from distillmeter.errors import UserError
from distillmeter.pipelines.losses import kd_loss, topk_kd_loss, topk_logprobs

DIVS = ["forward_kl", "reverse_kl", "jsd"]


def softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def kl(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    return np.sum(np.where(p > 0, p * (np.log(np.where(p > 0, p, 1)) - np.log(q)), 0.0), -1)


def divergence(pt: np.ndarray, ps: np.ndarray, div: str, beta: float) -> np.ndarray:
    if div == "forward_kl":
        return kl(pt, ps)
    if div == "reverse_kl":
        return kl(ps, pt)
    m = beta * pt + (1 - beta) * ps
    return beta * kl(pt, m) + (1 - beta) * kl(ps, m)


def masked_mean(per_pos: np.ndarray, mask: np.ndarray | None) -> float:
    if mask is None:
        return float(per_pos.mean())
    return float(per_pos[mask].sum() / max(mask.sum(), 1))


def ref_kd(s, t, div, T, beta, mask):
    s, t = s.astype(np.float64), t.astype(np.float64)
    return T**2 * masked_mean(divergence(softmax(t / T), softmax(s / T), div, beta), mask)


def ref_topk(s, t_vals, t_idx, div, T, beta, mask, tail):
    """Buckets built by hand: the k ids, plus 1 - their mass as the tail; tempered by
    raising bucket probabilities to 1/T and renormalising."""
    ps = softmax(s.astype(np.float64))
    pt_k = np.exp(t_vals.astype(np.float64))
    ps_k = np.take_along_axis(ps, t_idx, -1)
    if tail:
        pt_b = np.concatenate([pt_k, np.maximum(1 - pt_k.sum(-1, keepdims=True), 1e-6)], -1)
        ps_b = np.concatenate([ps_k, 1 - ps_k.sum(-1, keepdims=True)], -1)
    else:
        pt_b, ps_b = pt_k, ps_k
    pt_b = pt_b ** (1 / T)
    ps_b = ps_b ** (1 / T)
    pt_b /= pt_b.sum(-1, keepdims=True)
    ps_b /= ps_b.sum(-1, keepdims=True)
    return T**2 * masked_mean(divergence(pt_b, ps_b, div, beta), mask)


def random_case(seed, shape=(3, 5), vocab=11, scale=3.0):
    rng = np.random.default_rng(seed)
    s = rng.normal(0, scale, shape + (vocab,)).astype(np.float32)
    t = rng.normal(0, scale, shape + (vocab,)).astype(np.float32)
    mask = rng.random(shape) < 0.7
    mask[0, 0] = True
    return s, t, mask


@pytest.mark.parametrize(
    "div,beta",
    [("forward_kl", 0.5), ("reverse_kl", 0.5), ("jsd", 0.1), ("jsd", 0.5), ("jsd", 0.9)],
)
@pytest.mark.parametrize("T", [0.5, 1.0, 2.0, 4.0])
def test_kd_loss_matches_reference(div, T, beta):
    s, t, mask = random_case(int(T * 10 + beta * 100))
    for m in (mask, None):
        got = kd_loss(torch.tensor(s), torch.tensor(t), divergence=div, temperature=T,
                      beta=beta, mask=None if m is None else torch.tensor(m))
        assert got.dtype == torch.float32
        assert got.item() == pytest.approx(ref_kd(s, t, div, T, beta, m), rel=1e-5, abs=1e-6)


def test_kd_loss_basic_properties():
    s, t, _ = random_case(0)
    S, Tt = torch.tensor(s), torch.tensor(t)
    for div in DIVS:
        assert kd_loss(Tt, Tt, divergence=div).item() == pytest.approx(0, abs=1e-6)
        assert kd_loss(S, Tt, divergence=div).item() > 0.01
    # symmetric JSD is bounded by log 2
    far = torch.zeros(1, 4)
    far[0, 0] = 50.0
    near = torch.zeros(1, 4)
    near[0, 1] = 50.0
    assert kd_loss(far, near, divergence="jsd").item() == pytest.approx(np.log(2), rel=1e-4)
    # half precision inputs are computed in float32
    half = kd_loss(S.half(), Tt.half()).item()
    assert half == pytest.approx(ref_kd(S.half().numpy(), Tt.half().numpy(), "forward_kl",
                                        1.0, 0.5, None), rel=1e-5)


@pytest.mark.parametrize("div", DIVS)
@pytest.mark.parametrize("T", [0.7, 1.0, 2.0])
@pytest.mark.parametrize("tail", [True, False])
def test_topk_kd_loss_matches_reference(div, T, tail):
    s, t, mask = random_case(int(T * 10) + tail)
    vals, idx = topk_logprobs(torch.tensor(t), 4)
    got = topk_kd_loss(torch.tensor(s), vals, idx.int(), tail=tail, divergence=div,
                       temperature=T, mask=torch.tensor(mask))
    want = ref_topk(s, vals.numpy(), idx.numpy(), div, T, 0.5, mask, tail)
    assert got.item() == pytest.approx(want, rel=1e-5, abs=1e-6)


@pytest.mark.parametrize("div", DIVS)
@pytest.mark.parametrize("T", [0.5, 1.0, 3.0])
def test_topk_with_k_equal_vocab_is_the_full_loss(div, T):
    s, t, mask = random_case(7)
    S, Tt, M = torch.tensor(s), torch.tensor(t), torch.tensor(mask)
    vals, idx = topk_logprobs(Tt, 100)  # capped at V
    assert vals.shape[-1] == s.shape[-1]
    full = kd_loss(S, Tt, divergence=div, temperature=T, mask=M)
    for tail in (True, False):
        top = topk_kd_loss(S, vals, idx, tail=tail, divergence=div, temperature=T, mask=M)
        assert top.item() == pytest.approx(full.item(), rel=1e-5, abs=1e-7)


def test_fp16_cache_values():
    s, t, mask = random_case(3, vocab=50)
    t[..., 0] += 20.0  # a confident teacher: fp16 rounding can push the top-k mass past 1
    vals, idx = topk_logprobs(torch.tensor(t), 8)
    S = torch.tensor(s, requires_grad=True)
    for dtype in (torch.float16, torch.bfloat16):
        for div in DIVS:
            got = topk_kd_loss(S, vals.to(dtype), idx.int(), divergence=div,
                               mask=torch.tensor(mask))
            exact = topk_kd_loss(S, vals, idx, divergence=div, mask=torch.tensor(mask))
            assert torch.isfinite(got)
            assert got.item() == pytest.approx(exact.item(), rel=0.02, abs=1e-3)
            want = ref_topk(s, vals.to(dtype).float().numpy(), idx.numpy(), div, 1.0, 0.5,
                            mask, True)
            assert got.item() == pytest.approx(want, rel=1e-4, abs=1e-5)
            (g,) = torch.autograd.grad(got, S)
            assert torch.isfinite(g).all()


def test_gradients_finite_and_masked_rows_ignored():
    s, t, mask = random_case(5)
    vals, idx = topk_logprobs(torch.tensor(t), 4)
    M = torch.tensor(mask)
    # poison the padding rows, as an unwritten cache region might be
    vals[~M] = float("nan")
    idx[~M] = 10**6
    t_bad = torch.tensor(t)
    t_bad[~M] = float("nan")
    for div in DIVS:
        S = torch.tensor(s, requires_grad=True)
        loss = topk_kd_loss(S, vals, idx, divergence=div, temperature=2.0, mask=M)
        loss_full = kd_loss(S, t_bad, divergence=div, temperature=2.0, mask=M)
        loss.backward(retain_graph=True)
        assert torch.isfinite(loss) and torch.isfinite(S.grad).all()
        assert S.grad[~M].abs().max() == 0  # masked positions get no gradient
        S.grad = None
        loss_full.backward()
        assert torch.isfinite(loss_full) and torch.isfinite(S.grad).all()
        clean = kd_loss(S.detach(), torch.tensor(t), divergence=div, temperature=2.0, mask=M)
        assert loss_full.item() == pytest.approx(clean.item(), rel=1e-6)


def test_empty_mask_gives_zero_not_nan():
    s, t, mask = random_case(1)
    S = torch.tensor(s, requires_grad=True)
    none = torch.zeros(mask.shape, dtype=torch.bool)
    loss = kd_loss(S, torch.tensor(t), mask=none)
    assert loss.item() == 0.0
    loss.backward()
    assert torch.isfinite(S.grad).all()


def test_argument_errors():
    s, t, mask = random_case(2)
    S, Tt = torch.tensor(s), torch.tensor(t)
    with pytest.raises(UserError, match="unknown divergence"):
        kd_loss(S, Tt, divergence="kl")
    with pytest.raises(UserError, match="temperature"):
        kd_loss(S, Tt, temperature=0)
    with pytest.raises(UserError, match="beta"):
        kd_loss(S, Tt, divergence="jsd", beta=1.0)
    with pytest.raises(ValueError, match="shape"):
        kd_loss(S, Tt[..., :-1])
    with pytest.raises(ValueError, match="mask shape"):
        kd_loss(S, Tt, mask=torch.ones(3, 4, dtype=torch.bool))
    vals, idx = topk_logprobs(Tt, 3)
    with pytest.raises(ValueError, match="positions"):
        topk_kd_loss(S[:, :2], vals, idx)
    with pytest.raises(UserError, match="k >= 1"):
        topk_logprobs(Tt, 0)


def test_topk_logprobs():
    t = torch.randn(2, 3, 9)
    vals, idx = topk_logprobs(t, 3, temperature=2.0)
    full = torch.log_softmax(t / 2.0, -1)
    assert torch.allclose(vals, full.gather(-1, idx))
    assert torch.equal(idx, full.topk(3, -1).indices)
    assert (vals[..., :-1] >= vals[..., 1:]).all()


# --------------------------------------------------------------------------- on-policy


def ref_completion_mask(ids: np.ndarray, prompt_lens, eos: set[int], attention=None):
    """By hand, row by row: the completion's tokens up to and including its first EOS."""
    rows, length = ids.shape
    learned = np.zeros((rows, length), dtype=bool)
    for b in range(rows):
        for t in range(prompt_lens[b], length):
            if attention is not None and not attention[b, t]:
                continue
            learned[b, t] = True
            if ids[b, t] in eos:
                break
    return learned[:, 1:]


def sampled_rows(seed: int, *, vocab=11, eos=2, pad=0, rows=6, length=12):
    """Right-padded prompt + sampled completion rows as a generation loop leaves them:
    EOS then padding (pad may equal EOS), one row that never stops, one with an EOS id
    inside its prompt, one whose batch kept generating after its EOS."""
    rng = np.random.default_rng(seed)
    ids = np.full((rows, length), pad, dtype=np.int64)
    attention = np.zeros((rows, length), dtype=np.int64)
    prompt_lens = rng.integers(2, 5, rows)
    ordinary = [v for v in range(3, vocab)]
    for b in range(rows):
        n_new = int(rng.integers(1, length - prompt_lens[b] + 1))
        ids[b, : prompt_lens[b]] = rng.choice(ordinary, prompt_lens[b])
        ids[b, prompt_lens[b] : prompt_lens[b] + n_new] = rng.choice(ordinary, n_new)
        attention[b, : prompt_lens[b] + n_new] = 1
        if b != 1:  # row 1 ran into max_new_tokens: no EOS
            ids[b, prompt_lens[b] + n_new - 1] = eos
    ids[2, 1] = eos  # an EOS id in a prompt is not the completion's end
    end = prompt_lens[3] + 1  # row 3: EOS early, then the batch kept generating
    ids[3, end - 1] = eos
    ids[3, end:] = rng.choice(ordinary, length - end)
    attention[3, :] = 1
    return ids, prompt_lens, attention


@pytest.mark.parametrize("pad", [0, 2])  # pad id distinct from EOS, or the same id
def test_completion_mask_matches_reference(pad):
    from distillmeter.pipelines.losses import completion_mask

    for seed in range(5):
        ids, plen, att = sampled_rows(seed, pad=pad)
        want = ref_completion_mask(ids, plen, {2})
        got = completion_mask(torch.tensor(ids), plen.tolist(), 2)
        assert got.dtype == torch.bool and np.array_equal(got.numpy(), want)
        # with the attention mask: padding is masked whatever its id
        got = completion_mask(torch.tensor(ids), torch.tensor(plen), [2], torch.tensor(att))
        assert np.array_equal(got.numpy(), ref_completion_mask(ids, plen, {2}, att))
    # the prompt's columns and everything after the first EOS are never learned
    ids, plen, att = sampled_rows(0, pad=pad)
    m = completion_mask(torch.tensor(ids), plen.tolist(), 2, torch.tensor(att)).numpy()
    for b in range(len(ids)):
        assert not m[b, : plen[b] - 1].any()
        learned_tokens = ids[b, 1:][m[b]]
        assert (learned_tokens[:-1] != 2).all()  # at most one EOS, and it ends the row
    assert m[1].sum() == (att[1].sum() - plen[1])  # no EOS: learned to its end (no padding)
    assert ids[3, 1:][m[3]][-1] == 2 and m[3].sum() == 1  # stopped at its first EOS


def test_completion_mask_left_padded_generate_output():
    """``generate``'s layout: prompts left-padded to one width, then the new tokens."""
    from distillmeter.pipelines.losses import completion_mask

    pad, eos = 0, 2
    ids = torch.tensor([[pad, pad, 5, 6, 7, 2, pad],
                        [5, 6, 7, 8, 9, 9, 2],
                        [pad, 4, 2, 7, 2, 9, 9]])   # an EOS id inside the prompt, then one
    att = (ids != pad).long()
    m = completion_mask(ids, [4, 4, 4], eos, att)
    # column t predicts token t + 1: the completions start at column 3
    assert m.tolist() == [[False, False, False, True, True, False],
                          [False, False, False, True, True, True],
                          [False, False, False, True, False, False]]
    with pytest.raises(ValueError, match="prompt lengths"):
        completion_mask(ids, [0, 4, 4], eos)
    with pytest.raises(ValueError, match="3 rows"):
        completion_mask(ids, [4, 4], eos)


def ref_onpolicy(s, t, ids, plen, att, div, T, beta):
    """The on-policy loss in float64 by hand: the divergence at every learned column of the
    sampled rows, averaged over them."""
    mask = ref_completion_mask(ids, plen, {2}, att)
    return ref_kd(s[:, :-1], t[:, :-1], div, T, beta, mask)


@pytest.mark.parametrize(
    "div,beta", [("reverse_kl", 0.5), ("forward_kl", 0.5), ("jsd", 0.1), ("jsd", 0.9)])
@pytest.mark.parametrize("T", [0.5, 1.0, 2.0])
@pytest.mark.parametrize("pad", [0, 2])
def test_onpolicy_loss_matches_float64_reference(div, beta, T, pad):
    """kd_loss (full logits) and topk_kd_loss (k = V: the teacher scored as kept by
    teacher.score on a small vocabulary) over sampled rows with completion_mask."""
    from distillmeter.pipelines.losses import completion_mask

    ids, plen, att = sampled_rows(int(T * 10) + pad, pad=pad)
    rng = np.random.default_rng(int(T * 100 + beta * 10))
    s = rng.normal(0, 3, ids.shape + (11,)).astype(np.float32)
    t = rng.normal(0, 3, ids.shape + (11,)).astype(np.float32)
    # poison the columns that must not count: the loss must never see them
    hidden = ~ref_completion_mask(ids, plen, {2}, att)
    t[:, :-1][hidden] = np.nan
    want = ref_onpolicy(s, np.nan_to_num(t), ids, plen, att, div, T, beta)
    mask = completion_mask(torch.tensor(ids), plen.tolist(), 2, torch.tensor(att))
    S = torch.tensor(s, requires_grad=True)
    full = kd_loss(S[:, :-1], torch.tensor(t)[:, :-1], divergence=div, temperature=T,
                   beta=beta, mask=mask)
    assert full.item() == pytest.approx(want, rel=1e-5, abs=1e-6)
    vals, idx = topk_logprobs(torch.tensor(np.nan_to_num(t))[:, :-1], 11)
    top = topk_kd_loss(S[:, :-1], vals.half(), idx.int(), divergence=div, temperature=T,
                       beta=beta, mask=mask)
    assert top.item() == pytest.approx(want, rel=2e-3, abs=1e-4)  # fp16 teacher values
    (g,) = torch.autograd.grad(full, S)
    assert torch.isfinite(g).all()
    assert g[:, :-1][torch.tensor(hidden)].abs().max() == 0  # no gradient off the mask
    assert g[:, -1].abs().max() == 0


@pytest.mark.parametrize("div", DIVS)
def test_onpolicy_gradient_matches_float64(div):
    """The student's gradient against autograd through the same formula in float64."""
    from distillmeter.pipelines.losses import completion_mask

    ids, plen, att = sampled_rows(11)
    rng = np.random.default_rng(12)
    s = rng.normal(0, 2, ids.shape + (11,))
    t = rng.normal(0, 2, ids.shape + (11,))
    mask = completion_mask(torch.tensor(ids), plen.tolist(), 2, torch.tensor(att))
    S32 = torch.tensor(s, dtype=torch.float32, requires_grad=True)
    loss = kd_loss(S32[:, :-1], torch.tensor(t, dtype=torch.float32)[:, :-1], divergence=div,
                   temperature=1.5, beta=0.3, mask=mask)
    (g32,) = torch.autograd.grad(loss, S32)

    S64 = torch.tensor(s, dtype=torch.float64, requires_grad=True)
    ls = torch.log_softmax(S64[:, :-1] / 1.5, -1)
    lt = torch.log_softmax(torch.tensor(t, dtype=torch.float64)[:, :-1] / 1.5, -1)
    ps, pt = ls.exp(), lt.exp()
    if div == "forward_kl":
        per = (pt * (lt - ls)).sum(-1)
    elif div == "reverse_kl":
        per = (ps * (ls - lt)).sum(-1)
    else:
        m = torch.log(0.3 * pt + 0.7 * ps)
        per = 0.3 * (pt * (lt - m)).sum(-1) + 0.7 * (ps * (ls - m)).sum(-1)
    ref = 1.5**2 * per[mask].sum() / mask.sum()
    (g64,) = torch.autograd.grad(ref, S64)
    assert loss.item() == pytest.approx(ref.item(), rel=1e-5)
    assert torch.allclose(g32.double(), g64, rtol=1e-4, atol=1e-7)
