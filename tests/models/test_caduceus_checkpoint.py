"""Published configs: parameter counts, key/shape layout, ties, save/load round trips (spec §3).

We have no real checkpoint files, so hub-style directories are built by hand from the spec's key
list (§3.4) and its statement of which aliases the safetensors files omit (§3.5).
"""

import json
import math

import pytest
import torch
from safetensors.torch import load_file, save_file

import strandwise
from strandwise.models.caduceus import (
    PUBLISHED_CONFIGS,
    Caduceus,
    CaduceusCheckpointError,
    CaduceusConfig,
    CaduceusForMaskedLM,
    CaduceusForSequenceClassification,
    alias_map,
    load_caduceus,
    published_config,
)

# repo name -> (params, keys in file, full state_dict keys); spec §3.2, §3.5
EXPECTED = {
    "caduceus-ps_seqlen-131k_d_model-256_n_layer-16": (7_725_312, 276, 309),
    "caduceus-ph_seqlen-131k_d_model-256_n_layer-16": (7_725_312, 274, 307),
    "caduceus-ps_seqlen-1k_d_model-256_n_layer-4_lr-8e-3": (1_934_592, 72, 81),
    "caduceus-ph_seqlen-1k_d_model-256_n_layer-4_lr-8e-3": (1_934_592, 70, 79),
    "caduceus-ps_seqlen-1k_d_model-118_n_layer-4_lr-8e-3": (470_702, 72, 81),
    "caduceus-ph_seqlen-1k_d_model-118_n_layer-4_lr-8e-3": (470_702, 70, 79),
}
SMALL = [k for k in EXPECTED if "seqlen-1k" in k]


def spec_keys(d, n_layer, rcps):
    """Full state_dict (key -> shape) of CaduceusForMaskedLM written out from spec §3.4."""
    di, r, N = 2 * d, math.ceil(d / 16), 16
    P = "caduceus.backbone"
    keys = {}
    if rcps:
        keys[f"{P}.embeddings.word_embeddings.complement_map"] = (16,)
        keys[f"{P}.embeddings.word_embeddings.embedding.weight"] = (16, d)
    else:
        keys[f"{P}.embeddings.word_embeddings.weight"] = (16, d)
    mix = "mixer.submodule" if rcps else "mixer"
    for i in range(n_layer):
        for m in ("mamba_fwd", "mamba_rev"):
            pre = f"{P}.layers.{i}.{mix}.{m}"
            keys.update({
                f"{pre}.A_log": (di, N), f"{pre}.D": (di,), f"{pre}.in_proj.weight": (2 * di, d),
                f"{pre}.conv1d.weight": (di, 1, 4), f"{pre}.conv1d.bias": (di,),
                f"{pre}.x_proj.weight": (r + 2 * N, di), f"{pre}.dt_proj.weight": (di, r),
                f"{pre}.dt_proj.bias": (di,), f"{pre}.out_proj.weight": (d, di),
            })
        keys[f"{P}.layers.{i}.norm.weight"] = (d,)
    keys[f"{P}.norm_f.weight"] = (d,)
    if rcps:
        keys["lm_head.complement_map"] = (16,)
        keys["lm_head.lm_head.weight"] = (16, d)
    else:
        keys["lm_head.weight"] = (16, d)
    return keys


def omitted(keys):
    """Aliases the hub safetensors files omit (§3.5)."""
    return {k for k in keys if ".mamba_rev.in_proj." in k or ".mamba_rev.out_proj." in k or k.startswith("lm_head") and k.endswith("weight")}


def parse(name):
    d = int(name.split("d_model-")[1].split("_")[0])
    n = int(name.split("n_layer-")[1].split("_")[0])
    return d, n, name.startswith("caduceus-ps")


def write_hub_dir(tmp_path, name, seed=0):
    """A hub-style directory: config.json of §3.1 and a safetensors file with §3.4 keys minus aliases."""
    d, n, rcps = parse(name)
    keys = spec_keys(d, n, rcps)
    g = torch.Generator().manual_seed(seed)
    tensors = {}
    for k, shape in keys.items():
        if k in omitted(keys):
            continue
        if k.endswith("complement_map"):
            tensors[k] = torch.tensor([0, 1, 2, 3, 4, 5, 6, 10, 9, 8, 7, 11, 12, 13, 14, 15])
        elif k.endswith("A_log"):
            tensors[k] = torch.log(torch.arange(1, 17.0)).repeat(shape[0], 1)
        else:
            tensors[k] = 0.05 * torch.randn(shape, generator=g)
    out = tmp_path / name
    out.mkdir()
    (out / "config.json").write_text(json.dumps(PUBLISHED_CONFIGS[name], indent=2))
    save_file(tensors, str(out / "model.safetensors"), metadata={"format": "pt"})
    return out, tensors


@pytest.mark.parametrize("name", list(EXPECTED))
def test_parameter_counts_keys_and_ties_from_config_alone(name):
    params, n_file, n_full = EXPECTED[name]
    d, n, rcps = parse(name)
    model = CaduceusForMaskedLM(published_config(name))
    assert sum(p.numel() for p in model.parameters()) == params
    sd = model.state_dict()
    expect = spec_keys(d, n, rcps)
    assert {k: tuple(v.shape) for k, v in sd.items()} == expect
    assert len(sd) == n_full
    aliases = alias_map(model)
    assert set(aliases) == omitted(expect)
    assert len(sd) - len(aliases) == n_file
    for a, c in aliases.items():
        assert sd[a].data_ptr() == sd[c].data_ptr()
    if rcps:
        cm = [0, 1, 2, 3, 4, 5, 6, 10, 9, 8, 7, 11, 12, 13, 14, 15]
        assert sd["lm_head.complement_map"].tolist() == cm
        assert sd["caduceus.backbone.embeddings.word_embeddings.complement_map"].tolist() == cm


@pytest.mark.parametrize("name", SMALL)
def test_hand_built_hub_directory_loads_strictly_and_runs(tmp_path, name):
    path, tensors = write_hub_dir(tmp_path, name)
    model = CaduceusForMaskedLM.from_pretrained(path)
    sd = model.state_dict()
    for k, v in tensors.items():
        assert torch.equal(sd[k], v.to(sd[k].dtype)), k
    for a, c in alias_map(model).items():  # re-tied
        assert sd[a].data_ptr() == sd[c].data_ptr()
    d, _, rcps = parse(name)
    emb_key = "caduceus.backbone.embeddings.word_embeddings" + (".embedding.weight" if rcps else ".weight")
    head_key = "lm_head.lm_head.weight" if rcps else "lm_head.weight"
    assert torch.equal(sd[head_key], tensors[emb_key])
    ids = torch.randint(7, 12, (1, 32))
    logits = model(ids).logits
    assert logits.shape == (1, 32, 16) and torch.isfinite(logits).all()
    # save -> same deduplicated key set -> strict load gives identical outputs
    out = tmp_path / "resaved"
    model.save_pretrained(out)
    assert set(load_file(str(out / "model.safetensors"))) == set(tensors)
    again = load_caduceus(out)
    torch.testing.assert_close(again(ids).logits, logits, rtol=0, atol=0)
    # bare backbone from the same MLM directory (caduceus. prefix stripped, lm_head ignored)
    bb = Caduceus.from_pretrained(path)
    torch.testing.assert_close(bb(ids).last_hidden_state, model.caduceus(ids).last_hidden_state, rtol=0, atol=0)


def test_pytorch_model_bin_with_aliases_and_lightning_prefix(tmp_path):
    name = "caduceus-ps_seqlen-1k_d_model-118_n_layer-4_lr-8e-3"
    torch.manual_seed(0)
    model = CaduceusForMaskedLM(published_config(name))
    model.save_pretrained(tmp_path / "bin", safe_serialization=False)
    full = torch.load(tmp_path / "bin" / "pytorch_model.bin", weights_only=True)
    assert len(full) == 81  # every key, aliases included
    loaded = CaduceusForMaskedLM.from_pretrained(tmp_path / "bin")
    ids = torch.randint(7, 12, (2, 16))
    torch.testing.assert_close(loaded(ids).logits, model(ids).logits, rtol=0, atol=0)
    # Lightning checkpoint: {"state_dict": {"model.<key>": ...}}
    (tmp_path / "pl").mkdir()
    (tmp_path / "pl" / "config.json").write_text(json.dumps(PUBLISHED_CONFIGS[name]))
    torch.save({"state_dict": {"model." + k: v for k, v in full.items()}}, tmp_path / "pl" / "pytorch_model.bin")
    torch.testing.assert_close(CaduceusForMaskedLM.from_pretrained(tmp_path / "pl")(ids).logits, model(ids).logits, rtol=0, atol=0)
    # differing aliases in a .bin are an error
    bad = dict(full)
    k = "caduceus.backbone.layers.0.mixer.submodule.mamba_rev.in_proj.weight"
    bad[k] = bad[k] + 1
    torch.save(bad, tmp_path / "bin" / "pytorch_model.bin")
    with pytest.raises(CaduceusCheckpointError, match="tied tensors .*mamba_rev.in_proj.weight"):
        CaduceusForMaskedLM.from_pretrained(tmp_path / "bin")


def test_missing_unexpected_keys_and_complement_mismatch_are_named(tmp_path):
    name = "caduceus-ps_seqlen-1k_d_model-118_n_layer-4_lr-8e-3"
    path, tensors = write_hub_dir(tmp_path, name)
    t = dict(tensors)
    gone = "caduceus.backbone.layers.2.mixer.submodule.mamba_fwd.x_proj.weight"
    del t[gone]
    t["caduceus.backbone.layers.9.extra.weight"] = torch.zeros(1)
    save_file(t, str(path / "model.safetensors"))
    with pytest.raises(CaduceusCheckpointError) as err:
        CaduceusForMaskedLM.from_pretrained(path)
    assert f"missing keys (1): {gone}" in str(err.value)
    assert "unexpected keys (1): caduceus.backbone.layers.9.extra.weight" in str(err.value)
    t = dict(tensors)
    t["lm_head.complement_map"] = torch.arange(16)
    save_file(t, str(path / "model.safetensors"))
    with pytest.raises(CaduceusCheckpointError, match="lm_head.complement_map .* differs from the config"):
        CaduceusForMaskedLM.from_pretrained(path)
    t = dict(tensors)
    t["caduceus.backbone.norm_f.weight"] = torch.ones(7)
    save_file(t, str(path / "model.safetensors"))
    with pytest.raises(CaduceusCheckpointError, match=r"norm_f.weight has shape \(7,\)"):
        CaduceusForMaskedLM.from_pretrained(path)


def test_missing_files_and_hub_ids_give_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"looks like a Hugging Face hub id.*huggingface-cli download kuleshov-group/caduceus-ps"):
        CaduceusForMaskedLM.from_pretrained("kuleshov-group/caduceus-ps_seqlen-131k_d_model-256_n_layer-16")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        CaduceusForMaskedLM.from_pretrained(str(tmp_path / "nowhere" / "deeper" / "x"))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="config.json is missing"):
        CaduceusForMaskedLM.from_pretrained(empty)
    (empty / "config.json").write_text(json.dumps(PUBLISHED_CONFIGS["caduceus-ph_seqlen-1k_d_model-118_n_layer-4_lr-8e-3"]))
    with pytest.raises(FileNotFoundError, match="no weights file; expected one of model.safetensors, pytorch_model.bin"):
        CaduceusForMaskedLM.from_pretrained(empty)


def test_classification_head_from_mlm_checkpoint(tmp_path):
    name = "caduceus-ps_seqlen-1k_d_model-118_n_layer-4_lr-8e-3"
    path, tensors = write_hub_dir(tmp_path, name)
    clf = CaduceusForSequenceClassification.from_pretrained(path, num_labels=3)
    key = "caduceus.backbone.norm_f.weight"
    assert torch.equal(clf.state_dict()[key], tensors[key])
    assert clf(torch.randint(7, 11, (2, 20))).logits.shape == (2, 3)


def test_config_round_trip_and_vocab_padding(tmp_path):
    raw = PUBLISHED_CONFIGS["caduceus-ps_seqlen-131k_d_model-256_n_layer-16"]
    cfg = CaduceusConfig.from_dict(json.loads(json.dumps(raw)))
    assert cfg.complement_map[7] == 10 and cfg.extras["transformers_version"] == "4.38.1"
    p = tmp_path / "config.json"
    cfg.to_json(p)
    again = CaduceusConfig.from_json(p)
    assert again == cfg
    assert json.loads(p.read_text()) == json.loads(json.dumps(raw)) | {"gradient_checkpointing": False, "gradient_checkpointing_stride": 1}
    # vocab 12 -> 16 with identity complements past the map
    small = CaduceusConfig(d_model=8, n_layer=1, vocab_size=12, rcps=True, complement_map={7: 10, 8: 9, 9: 8, 10: 7})
    m = Caduceus(small)
    assert m.config.vocab_size == 16
    assert m.backbone.embeddings.word_embeddings.complement_map.tolist() == [0, 1, 2, 3, 4, 5, 6, 10, 9, 8, 7, 11, 12, 13, 14, 15]
    with pytest.raises(ValueError, match=r"unknown CaduceusConfig key\(s\): \['d_modle'\]"):
        CaduceusConfig.from_dict({"d_modle": 3})


def test_bad_configs_raise():
    with pytest.raises(ValueError, match="d_model must be a positive int"):
        CaduceusConfig(d_model=0, n_layer=1)
    with pytest.raises(ValueError, match="d_model must be a positive int"):
        CaduceusConfig(d_model=12.5, n_layer=1)
    with pytest.raises(ValueError, match="rcps=True needs a complement_map"):
        CaduceusConfig(d_model=8, n_layer=1, rcps=True)
    with pytest.raises(ValueError, match="complement_map must be an involution"):
        CaduceusConfig(d_model=8, n_layer=1, vocab_size=12, rcps=True, complement_map={7: 10, 8: 9, 9: 8, 10: 8})
    with pytest.raises(ValueError, match="bidirectional_strategy"):
        CaduceusConfig(d_model=8, n_layer=1, bidirectional_strategy="concat")
    with pytest.raises(ValueError, match="rms_norm=False"):
        CaduceusConfig(d_model=8, n_layer=1, rms_norm=False)
    m = Caduceus(CaduceusConfig(d_model=8, n_layer=1, vocab_size=12, rcps=True, complement_map={7: 10, 8: 9, 9: 8, 10: 7}, ssm_cfg={"d_state": 4}))
    with pytest.raises(ValueError, match=r"inputs_embeds must have shape \(B, L, 16\)"):
        m(inputs_embeds=torch.zeros(1, 4, 15))
    with pytest.raises(ValueError, match="even channel count"):
        m.backbone.layers[0].mixer(torch.zeros(1, 4, 15))
    with pytest.raises(ValueError, match=r"token ids must lie in \[0, 16\)"):
        m(torch.tensor([[7, 16]]))


def test_exports():
    for name in ("CaduceusConfig", "CharacterTokenizer", "BiMambaWrapper", "RCPSEmbedding", "RCPSAddNormWrapper",
                 "CaduceusForMaskedLM", "DNAEmbeddingModelCaduceus", "CaduceusProjector", "string_reverse_complement",
                 "RCPSWrapper", "RCPSMambaBlock", "RCPSLMHead", "Caduceus", "selective_scan_fn"):
        assert hasattr(strandwise, name), name
