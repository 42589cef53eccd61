"""CharacterTokenizer: ids of spec §2, padding, special tokens, N handling, reverse complement."""

import random

import pytest
import torch

import strandwise
from strandwise.io import (
    CharacterTokenizer,
    complement_map_tensor,
    ids_to_one_hot,
    n_to_pad,
    one_hot_encode,
    reverse_complement_ids,
    reverse_complement_one_hot,
    string_reverse_complement,
)
from strandwise.io.tokenizer import VOCAB


def test_vocabulary_ids_are_the_spec_table():
    assert VOCAB == {
        "[CLS]": 0, "[SEP]": 1, "[BOS]": 2, "[MASK]": 3, "[PAD]": 4, "[RESERVED]": 5, "[UNK]": 6,
        "A": 7, "C": 8, "G": 9, "T": 10, "N": 11,
    }
    tok = CharacterTokenizer()
    assert tok("ACGTN")["input_ids"].tolist() == [[7, 8, 9, 10, 11]]
    assert (tok.pad_token_id, tok.mask_token_id, tok.unk_token_id, tok.sep_token_id) == (4, 3, 6, 1)
    assert strandwise.CharacterTokenizer is CharacterTokenizer


def test_complement_map_matches_spec():
    assert complement_map_tensor().tolist() == [0, 1, 2, 3, 4, 5, 6, 10, 9, 8, 7, 11, 12, 13, 14, 15]
    assert CharacterTokenizer().complement_map == {i: i for i in range(12)} | {7: 10, 8: 9, 9: 8, 10: 7}


def test_lowercase_handling_in_both_modes():
    assert CharacterTokenizer().encode("acgtn") == [7, 8, 9, 10, 11]
    # Downstream (GB/NT) behaviour: no uppercasing, lowercase is unknown.
    assert CharacterTokenizer(uppercase=False, unknown="unk").encode("aCgT") == [6, 8, 6, 10]
    with pytest.raises(ValueError, match=r"unknown character 'a' at position 0 \(lowercase is unknown"):
        CharacterTokenizer(uppercase=False).encode("aCGT")


def test_unknown_characters_error_by_default_or_map_as_documented():
    with pytest.raises(ValueError, match=r"unknown character 'R' at position 3"):
        CharacterTokenizer().encode("ACGRT")
    assert CharacterTokenizer(unknown="unk").encode("ACGRT") == [7, 8, 9, 6, 10]
    assert CharacterTokenizer(unknown="N").encode("AC-GT") == [7, 8, 11, 9, 10]
    with pytest.raises(ValueError, match="unknown must be one of"):
        CharacterTokenizer(unknown="skip")


def test_no_special_tokens_by_default_and_add_eos():
    assert CharacterTokenizer().encode("ACG") == [7, 8, 9]
    assert CharacterTokenizer(add_eos=True).encode("ACG") == [7, 8, 9, 1]
    assert CharacterTokenizer().encode("ACG", add_special_tokens=True) == [7, 8, 9, 1]


def test_left_padding_and_attention_mask():
    tok = CharacterTokenizer(model_max_length=8)
    out = tok(["ACGT", "GA"], padding=True)
    assert out["input_ids"].tolist() == [[7, 8, 9, 10], [4, 4, 9, 7]]
    assert out["attention_mask"].tolist() == [[1, 1, 1, 1], [0, 0, 1, 1]]
    out = tok(["GA"], padding="max_length", max_length=5)
    assert out["input_ids"].tolist() == [[4, 4, 4, 9, 7]]
    right = CharacterTokenizer(padding_side="right")(["ACGT", "GA"], padding=True)
    assert right["input_ids"].tolist() == [[7, 8, 9, 10], [9, 7, 4, 4]]
    with pytest.raises(ValueError, match="different lengths"):
        tok(["ACGT", "GA"])


def test_model_max_length_and_truncation():
    tok = CharacterTokenizer(model_max_length=4)
    with pytest.raises(ValueError, match=r"5 tokens exceeds max_length=4 \(model_max_length=4\)"):
        tok.encode("ACGTA")
    assert tok.encode("ACGTA", truncation=True) == [7, 8, 9, 10]
    with pytest.raises(ValueError, match="exceeds model_max_length"):
        tok.encode("AC", max_length=9)
    with pytest.raises(ValueError, match="model_max_length must be a positive int"):
        CharacterTokenizer(model_max_length=0)


def test_decode_round_trip():
    tok = CharacterTokenizer()
    assert tok.decode([4, 4, 7, 8, 11, 1]) == "[PAD][PAD]ACN[SEP]"
    assert tok.decode(torch.tensor([4, 7, 10, 3]), skip_special_tokens=True) == "AT"
    assert tok.batch_decode(torch.tensor([[7, 8], [9, 10]])) == ["AC", "GT"]
    with pytest.raises(ValueError, match="token id 99"):
        tok.decode([99])


def test_reverse_complement_ids_agrees_with_strings_and_one_hot():
    rng = random.Random(0)
    tok = CharacterTokenizer()
    for _ in range(20):
        s = "".join(rng.choice("ACGTN") for _ in range(rng.randint(1, 50)))
        ids = tok(s)["input_ids"]
        rc_ids = reverse_complement_ids(ids)
        assert tok.decode(rc_ids[0]) == string_reverse_complement(s)
        oh = ids_to_one_hot(ids)
        assert torch.equal(ids_to_one_hot(rc_ids), reverse_complement_one_hot(oh))
        assert torch.equal(oh[0], one_hot_encode(s, dtype=torch.float32))
        assert torch.equal(reverse_complement_ids(rc_ids), ids)  # an involution


def test_string_reverse_complement_mixed_case_and_unknown():
    assert string_reverse_complement("AacGTN") == "NACgtT"
    assert CharacterTokenizer.reverse_complement("ACGT-x") == "x-ACGT"


def test_n_handling():
    tok = CharacterTokenizer()
    ids = tok("ANNC")["input_ids"]
    assert ids.tolist() == [[7, 11, 11, 8]]  # the tokenizer always maps N -> 11
    assert n_to_pad(ids).tolist() == [[7, 4, 4, 8]]  # pretraining replaces N by [PAD]
    assert reverse_complement_ids(ids).tolist() == [[9, 11, 11, 10]]
