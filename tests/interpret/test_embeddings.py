"""Embeddings: shapes per output, files with ids, RC invariance of pooled features."""

import json
import os

import numpy as np
import pytest
import torch

from strandwise.interpret.embeddings import embed_sequences
from strandwise.io.records import SequenceStore
from strandwise.io.sequence import string_reverse_complement
from strandwise.models.caduceus import CaduceusProjector, DNAEmbeddingModelCaduceus
from strandwise.train.caduceus_module import CaduceusModelConfig
from shared_data import needs_shared_data, shared

pytestmark = needs_shared_data

CHR_I = os.path.join(shared("yeast_genome_R64-1-1"),
                     "Saccharomyces_cerevisiae.R64-1-1.dna.chromosome.I.fa.gz")


@pytest.fixture(scope="module")
def seqs():
    st = SequenceStore(CHR_I)
    return [st.fetch("I", 10_000 + 100 * i, 10_000 + 100 * i + 40 + 5 * i) for i in range(5)]


def _bb(variant, conjoin=True):
    torch.manual_seed(0)
    cfg = CaduceusModelConfig(variant=variant, d_model=8, n_layer=1, d_state=4).caduceus_config()
    return DNAEmbeddingModelCaduceus(cfg, conjoin_train=conjoin, aligned=True)


@pytest.mark.parametrize("output,shape", [("tokens", (5, 60, 8)), ("tokens_strands", (5, 60, 8, 2)),
                                          ("pooled", (5, 8)), ("pooled_strands", (5, 16)), ("projected", (5, 512))])
def test_shapes_and_safetensors_with_ids(tmp_path, seqs, output, shape):
    from safetensors import safe_open

    proj = CaduceusProjector(input_dim=16) if output == "projected" else None
    ids = [f"r{i}" for i in range(5)]
    out = embed_sequences(_bb("ps"), seqs, ids, str(tmp_path / "e.safetensors"), output, batch_size=2,
                          projector=proj, device="cpu")
    assert out["shape"] == shape
    with safe_open(str(tmp_path / "e.safetensors"), "pt") as f:
        e = f.get_tensor("embeddings")
        assert tuple(e.shape) == shape and torch.isfinite(e).all()
        assert json.loads(f.metadata()["ids"]) == ids
        if output.startswith("tokens"):
            m = f.get_tensor("mask")
            assert m.sum(1).tolist() == [len(s) for s in seqs]  # left padding to the longest (60)
            assert m[0, :20].sum() == 0
    assert (tmp_path / "e.safetensors.ids.txt").read_text().split() == ids


def test_npz_and_batch_size_independence(tmp_path, seqs):
    a = embed_sequences(_bb("ph"), seqs, list("abcde"), str(tmp_path / "a.npz"), "pooled", "npz", batch_size=1, device="cpu")
    b = embed_sequences(_bb("ph"), seqs, list("abcde"), str(tmp_path / "b.npz"), "pooled", "npz", batch_size=5, device="cpu")
    za, zb = np.load(a["path"]), np.load(b["path"])
    assert za["ids"].tolist() == list("abcde") and za["embeddings"].shape == (5, 8)
    assert np.allclose(za["embeddings"], zb["embeddings"], atol=1e-5)


@pytest.mark.parametrize("variant", ["ps", "ph"])
def test_pooled_features_are_reverse_complement_invariant(tmp_path, seqs, variant):
    s = [x[:40] for x in seqs]  # equal lengths: no padding
    rc = [string_reverse_complement(x) for x in s]
    for output in ("pooled", "pooled_strands"):
        a = embed_sequences(_bb(variant), s, list("abcde"), str(tmp_path / "f.npz"), output, "npz", device="cpu")
        e1 = np.load(a["path"])["embeddings"]
        b = embed_sequences(_bb(variant), rc, list("abcde"), str(tmp_path / "g.npz"), output, "npz", device="cpu")
        e2 = np.load(b["path"])["embeddings"]
        assert np.allclose(e1, e2, atol=1e-4)
