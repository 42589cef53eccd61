"""CPU batch chunking of the Caduceus backbone (strandwise.models.cpu_chunks): same outputs,
hidden states and gradients as the whole batch, and no chunking while hooks are registered."""

import pytest
import torch

from strandwise.models import cpu_chunks
from strandwise.models.caduceus import CaduceusConfig, CaduceusForMaskedLM

COMP = {i: i for i in range(12)} | {7: 10, 8: 9, 9: 8, 10: 7}


def _model(rcps):
    torch.manual_seed(0)
    cfg = CaduceusConfig(d_model=16, n_layer=2, vocab_size=12, rcps=rcps, complement_map=COMP,
                         ssm_cfg={"d_state": 4})
    return CaduceusForMaskedLM(cfg)


def test_chunk_size_follows_the_budget():
    assert cpu_chunks.chunk_size(10, 95) == 9
    assert cpu_chunks.chunk_size(10 ** 9, 16) == 1
    bb = _model(True).caduceus.backbone
    # x and z of the Mamba (2 · d_inner, d_inner = 2 · 16), fp32, twice for RCPS
    assert bb.cpu_chunk_size(100) == cpu_chunks.CPU_CHUNK_BYTES // (100 * 2 * 32 * 4 * 2)


@pytest.mark.parametrize("rcps", [True, False])
def test_chunked_backbone_matches_whole_batch(monkeypatch, rcps):
    m = _model(rcps)
    bb = m.caduceus.backbone
    ids = torch.randint(7, 11, (5, 40), generator=torch.Generator().manual_seed(1))

    def run():
        m.zero_grad()
        out = m(ids, output_hidden_states=True)
        out.logits.float().logsumexp(-1).sum().backward()
        grads = {k: p.grad.clone() for k, p in m.named_parameters() if p.grad is not None}
        return out.logits.detach(), [h.detach() for h in out.hidden_states], grads

    whole = run()
    calls = []
    real = bb._forward_whole
    monkeypatch.setattr(bb, "_forward_whole", lambda i, e, h: calls.append(i.shape[0]) or real(i, e, h))
    monkeypatch.setattr(bb, "cpu_chunk_size", lambda L: 2)
    chunked = run()
    assert calls == [2, 2, 1]
    torch.testing.assert_close(chunked[0], whole[0], rtol=1e-5, atol=1e-6)
    assert len(chunked[1]) == len(whole[1]) > 0
    for a, b in zip(chunked[1], whole[1]):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    assert chunked[2].keys() == whole[2].keys()
    for k in whole[2]:
        torch.testing.assert_close(chunked[2][k], whole[2][k], rtol=1e-4, atol=1e-6, msg=k)


def test_no_chunking_with_hooks(monkeypatch):
    m = _model(True)
    bb = m.caduceus.backbone
    monkeypatch.setattr(bb, "cpu_chunk_size", lambda L: 2)
    seen = []
    h = bb.layers[0].register_forward_hook(lambda mod, i, o: seen.append(i[0].shape[0]))
    with torch.no_grad():
        m(torch.randint(7, 11, (5, 40)))
    h.remove()
    assert seen == [5]
    assert not cpu_chunks.has_module_hooks(m)
