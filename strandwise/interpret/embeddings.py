"""Caduceus embeddings of sequences, streamed to safetensors or NPZ (spec ``caduceus.md`` §1.2).

Outputs (``d`` = ``d_model``; both strands are in forward coordinates, so one padding mask serves
both):

========================  ================  ====================================================
``output``                shape             what
========================  ================  ====================================================
``tokens``                (N, L, d)         PS: per-position strand average ``(X_f + flip_C(X_r))/2``;
                                            Ph: the forward pass
``tokens_strands``        (N, L, d, 2)      forward and (aligned) reverse-complement strand
``pooled``                (N, d)            masked mean over L of both strands, averaged (RC-invariant)
``pooled_strands``        (N, 2d)           [strand-averaged mean | strand-max max] (RC-invariant)
``projected``             (N, P)            ``CaduceusProjector`` over ``pooled_strands`` (P = 512)
========================  ================  ====================================================

Sequences are left-padded with [PAD] to a common length (as upstream's downstream loaders); token
outputs come with ``mask`` (N, L) (1 = real base). Results are computed batch by batch into a
memory-mapped scratch file next to the output, then written atomically: large inputs never sit in
memory at once. Ids are stored alongside (safetensors metadata ``ids`` as JSON, NPZ array ``ids``)
and in ``PATH.ids.txt``.
"""

from __future__ import annotations

import json
import os
import tempfile

import numpy as np
import torch

from strandwise.models.caduceus import strand_invariant_pool, strand_invariant_pool_concat

__all__ = ["EMBEDDING_OUTPUTS", "embed_ids", "embed_sequences", "encode_padded", "write_safetensors_streamed"]

EMBEDDING_OUTPUTS = ("tokens", "tokens_strands", "pooled", "pooled_strands", "projected")
PAD_ID = 4


def encode_padded(seqs, max_length: int) -> torch.Tensor:
    """Token ids ``(B, max_length)``: left-padded with [PAD], right-truncated, N kept as 11."""
    from strandwise.io.records import ID_LUT

    out = np.full((len(seqs), max_length), PAD_ID, dtype=np.int64)
    for i, s in enumerate(seqs):
        raw = np.frombuffer(s[:max_length].encode("ascii", errors="replace"), dtype=np.uint8)
        if len(raw):
            out[i, max_length - len(raw):] = ID_LUT[raw]
    return torch.from_numpy(out)


def _out_shape(output: str, n: int, L: int, d: int, proj_dim: int) -> tuple:
    return {"tokens": (n, L, d), "tokens_strands": (n, L, d, 2), "pooled": (n, d),
            "pooled_strands": (n, 2 * d), "projected": (n, proj_dim)}[output]


@torch.no_grad()
def embed_ids(backbone, ids: torch.Tensor, output: str = "pooled", projector=None) -> torch.Tensor:
    """Embeddings of one batch of ids ``(B, L)`` from a :class:`DNAEmbeddingModelCaduceus`.

    The backbone must return both strands (``[B, L, d, 2]``) for every output except Ph ``tokens``.
    """
    if output not in EMBEDDING_OUTPUTS:
        raise ValueError(f"output must be one of {EMBEDDING_OUTPUTS}; got {output!r}")
    mask = ids != PAD_ID
    h, _ = backbone(ids)
    h = h.float()
    if output == "tokens":
        return h.mean(-1) if h.ndim == 4 else h
    if h.ndim != 4:
        raise ValueError(f"output {output!r} needs both strands; build the backbone with conjoin_train=True")
    if output == "tokens_strands":
        return h
    if output == "pooled":
        return strand_invariant_pool(h, mask)
    feats = strand_invariant_pool_concat(h, mask)
    if output == "pooled_strands":
        return feats
    if projector is None:
        raise ValueError("output 'projected' needs a CaduceusProjector")
    return projector(feats).float()


def write_safetensors_streamed(path: str, arrays: dict, metadata: dict | None = None, chunk: int = 1 << 24) -> None:
    """Write numpy arrays (memmaps welcome) as one safetensors file without holding them in memory.

    Format: 8-byte little-endian header length, JSON header (dtype, shape, data_offsets per
    tensor, ``__metadata__`` strings), padded with spaces to a multiple of 8, then the raw bytes.
    """
    from strandwise.io.atomic import atomic_path

    dtypes = {np.dtype("float32"): "F32", np.dtype("float16"): "F16", np.dtype("int64"): "I64",
              np.dtype("uint8"): "U8", np.dtype("bool"): "BOOL", np.dtype("int32"): "I32"}
    header, offset = {}, 0
    for k, a in arrays.items():
        if a.dtype not in dtypes:
            raise TypeError(f"{k}: dtype {a.dtype} is not supported")
        header[k] = {"dtype": dtypes[a.dtype], "shape": list(a.shape), "data_offsets": [offset, offset + a.nbytes]}
        offset += a.nbytes
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    hb = json.dumps(header, separators=(",", ":")).encode("utf-8")
    hb += b" " * (-len(hb) % 8)
    with atomic_path(path, suffix=".safetensors") as tmp:
        with open(tmp, "wb") as fh:
            fh.write(len(hb).to_bytes(8, "little"))
            fh.write(hb)
            for a in arrays.values():
                flat = np.ascontiguousarray(a).reshape(-1).view(np.uint8)
                for s in range(0, flat.size, chunk):
                    fh.write(flat[s : s + chunk].tobytes())


def embed_sequences(backbone, sequences, ids, path: str, output: str = "pooled", fmt: str = "safetensors",
                    batch_size: int = 32, max_length: int | None = None, projector=None, device=None,
                    progress: bool = False) -> dict:
    """Embed ``sequences`` batch by batch and write ``path`` (safetensors or NPZ) with ``ids``.

    Parameters
    ----------
    backbone : DNAEmbeddingModelCaduceus
    sequences : sequence of str
    ids : sequence of str
        One id per sequence (FASTA names, ``chrom:start-end``, ...).
    path : str
    output : str
        See the module table.
    fmt : {"safetensors", "npz"}
    max_length : int, optional
        Common length (left-padding / right-truncation); default the longest sequence.
    projector : CaduceusProjector, optional
        Needed for ``projected``.

    Returns
    -------
    dict with ``path``, ``shape``, ``n``.
    """
    n = len(sequences)
    if n == 0:
        raise ValueError("no sequences to embed")
    if len(ids) != n:
        raise ValueError(f"{len(ids)} ids for {n} sequences")
    L = int(max_length or max(len(s) for s in sequences))
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    backbone = backbone.eval().to(device)
    if projector is not None:
        projector = projector.eval().to(device)
    d = backbone.config.d_model
    if output == "projected" and projector is None:
        raise ValueError("output 'projected' needs a CaduceusProjector")
    proj_dim = projector.net[-1].normalized_shape[0] if projector is not None else 0
    shape = _out_shape(output, n, L, d, proj_dim)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, scratch = tempfile.mkstemp(prefix=".embed-", suffix=".f32", dir=folder)
    os.close(fd)
    try:
        mm = np.memmap(scratch, dtype=np.float32, mode="w+", shape=shape)
        mask = np.zeros((n, L), dtype=np.uint8) if output.startswith("tokens") else None
        starts = range(0, n, batch_size)
        if progress:
            from tqdm.auto import tqdm

            starts = tqdm(starts, desc="embed", unit="batch")
        for b in starts:
            x = encode_padded(sequences[b : b + batch_size], L).to(device)
            mm[b : b + len(x)] = embed_ids(backbone, x, output, projector).cpu().numpy()
            if mask is not None:
                mask[b : b + len(x)] = (x != PAD_ID).cpu().numpy()
        mm.flush()
        arrays = {"embeddings": mm}
        if mask is not None:
            arrays["mask"] = mask
        meta = {"output": output, "d_model": d, "max_length": L, "rcps": backbone.config.rcps}
        if fmt == "safetensors":
            write_safetensors_streamed(path, arrays, {**meta, "ids": json.dumps(list(map(str, ids)))})
        elif fmt == "npz":
            from strandwise.io.atomic import atomic_path

            with atomic_path(path, suffix=".npz") as tmp:
                np.savez(tmp, ids=np.array(list(map(str, ids))), meta=np.array(json.dumps(meta)), **arrays)
        else:
            raise ValueError(f"fmt must be 'safetensors' or 'npz'; got {fmt!r}")
        del mm
    finally:
        if os.path.exists(scratch):
            os.remove(scratch)
    from strandwise.io.atomic import atomic_write_text

    atomic_write_text(path + ".ids.txt", "\n".join(map(str, ids)) + "\n")
    return {"path": path, "shape": tuple(shape), "n": n}
