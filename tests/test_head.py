"""Scoring head vs a plain reference written from the paper's equations (Sec. 3.2)."""
import numpy as np
import pytest
import torch

from vpkl.model.head import ScoringHead, localising_attention


def reference(query, audio, n):
    """One query (M, D) against one utterance (N, D) with n valid frames, in plain loops."""
    m_, d_ = query.shape
    mm = [[float(np.dot(query[m], audio[t])) for t in range(n)] for m in range(m_)]
    a = [max(mm[m][t] for m in range(m_)) for t in range(n)]
    lo, hi = min(a), max(a)
    a = [(v - lo) / (hi - lo) if hi > lo else 1.0 for v in a]
    i = [max(mm[m][t] for t in range(n)) for m in range(m_)]
    lo, hi = min(i), max(i)
    i = [(v - lo) / (hi - lo) if hi > lo else 1.0 for v in i]
    actx = sum(a[t] * audio[t] for t in range(n)) / n
    ictx = sum(i[m] * query[m] for m in range(m_)) / m_
    cos = float(np.dot(actx, ictx) / (np.linalg.norm(actx) * np.linalg.norm(ictx)))
    return (1 + cos) / 2, np.array(a + [0.0] * (audio.shape[0] - n)), np.array(i)


@pytest.mark.parametrize("q,m,n,d,valid", [(3, 16, 40, 8, [40, 25]), (1, 1, 1, 4, [1]), (2, 49, 7, 16, [3, 7])])
def test_batched_head_matches_reference(q, m, n, d, valid):
    rng = np.random.default_rng(q * 100 + n)
    query = rng.standard_normal((q, m, d))
    audio = rng.standard_normal((len(valid), n, d))
    s, att, im = localising_attention(torch.from_numpy(query), torch.from_numpy(audio), torch.tensor(valid))
    for qi in range(q):
        for b, nv in enumerate(valid):
            rs, ra, ri = reference(query[qi], audio[b], nv)
            assert abs(s[qi, b].item() - rs) < 1e-9
            assert np.abs(att[qi, b].numpy() - ra).max() < 1e-9
            assert np.abs(im[qi, b].numpy() - ri).max() < 1e-9


def test_min_equals_max_is_defined():
    """All frames equal (silence): aud_att is 1 on every valid frame, S is the plain-mean cosine."""
    rng = np.random.default_rng(0)
    query = torch.from_numpy(rng.standard_normal((1, 4, 6)))
    frame = torch.from_numpy(rng.standard_normal(6))
    audio = frame.repeat(5, 1)[None]
    s, att, im = localising_attention(query, audio, torch.tensor([5]))
    assert torch.all(att == 1.0) and torch.isfinite(s).all()
    im_ref = reference(query[0].numpy(), audio[0].numpy(), 5)[2]
    ictx = (torch.from_numpy(im_ref)[:, None] * query[0]).mean(0)
    cos = torch.nn.functional.cosine_similarity(frame, ictx, dim=0)
    assert abs(s.item() - (1 + cos.item()) / 2) < 1e-12
    # one frame: the same rule, and the localised frame is that frame
    s1, att1, _ = localising_attention(query, audio[:, :1], torch.tensor([1]))
    assert att1.flatten().tolist() == [1.0] and torch.isfinite(s1).all()


def test_single_utterance_head_equals_batched():
    rng = np.random.default_rng(1)
    q = torch.from_numpy(rng.standard_normal((4, 16, 8))).float()
    a = torch.from_numpy(rng.standard_normal((30, 8))).float()
    s, att, im = ScoringHead()(q, a, torch.tensor([30]))
    for k in range(4):
        rs, ra, ri = reference(q[k].double().numpy(), a.double().numpy(), 30)
        assert abs(s[k].item() - rs) < 1e-6 and np.abs(att[k].numpy() - ra).max() < 1e-5
