import torch

from strandwise import Cherimoya
from strandwise.evaluate import expected_counts, predict
from strandwise.evaluate.plots import plot_count_scatter, plot_profiles, plot_training_curves


def test_rc_average_is_invariant_to_input_rc_with_stranded_groups():
    m = Cherimoya(n_filters=8, n_layers=2, signal_groups=[1, 2], trimming=20, random_state=0)
    with torch.no_grad():
        for p in m.parameters():
            p.add_(torch.randn_like(p) * 0.2)
    X = torch.nn.functional.one_hot(torch.randint(0, 4, (3, 90)), 4).permute(0, 2, 1).float()
    p1, c1 = predict(m, X, reverse_complement_average=True, batch_size=2)
    p2, c2 = predict(m, X.flip(-1).flip(-2), reverse_complement_average=True)
    # RC of the input gives the same averaged prediction after mapping back per group
    torch.testing.assert_close(p2[:, [0, 2, 1]].flip(-1), p1, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(c1, c2, atol=1e-5, rtol=1e-5)
    # and it is not what flipping *all* channels would give (upstream defect §7.4 #2)
    pa, _ = predict(m, X)
    pr, _ = predict(m, X.flip(-1).flip(-2))
    wrong = (pa + pr.flip(1).flip(-1)) / 2
    assert not torch.allclose(wrong, p1, atol=1e-3)


def test_predict_batches_equal_single_pass():
    m = Cherimoya(n_filters=8, n_layers=2, trimming=20, random_state=1)
    X = torch.randn(5, 4, 80)
    p, c = predict(m, X, batch_size=2)
    with torch.no_grad():
        pr, cr = m(X)
    torch.testing.assert_close(p, pr)
    torch.testing.assert_close(c, cr)


def test_expected_counts_group_sums():
    logits = torch.randn(2, 3, 10)
    counts = torch.tensor([[1.0, 2.0], [0.5, 3.0]])
    e = expected_counts(logits, counts, [1, 2])
    torch.testing.assert_close(e[:, 0].sum(-1), torch.expm1(counts[:, 0]))
    torch.testing.assert_close(e[:, 1:].sum((1, 2)), torch.expm1(counts[:, 1]))


def test_plots_write_pngs(tmp_path):
    hist = [{"epoch": i, "train_mnll": 3 - i, "train_count_mse": 1, "val_mnll": 3, "val_count_mse": 1,
             "val_profile_pearson": 0.1 * i, "val_count_pearson": 0.2 * i} for i in range(3)]
    plot_training_curves(hist, tmp_path / "curve.png")
    plot_profiles(torch.rand(2, 2, 50), torch.rand(2, 2, 50), ["a", "b"], tmp_path / "prof.png")
    plot_count_scatter(torch.rand(20), torch.rand(20), tmp_path / "sc.png")
    for f in ("curve.png", "prof.png", "sc.png"):
        assert (tmp_path / f).read_bytes()[:4] == b"\x89PNG"


def test_rc_average_permutes_controls_within_their_groups():
    """Controls are reverse-complemented per control group (spec §7.4 #2): a stranded pair swaps,
    an unstranded track stays; flipping all control channels would be a different prediction."""
    from strandwise.evaluate.predict import reverse_complement_inputs

    m = Cherimoya(n_filters=8, n_layers=2, signal_groups=[1, 2], n_control_tracks=3, trimming=20,
                  random_state=2)
    with torch.no_grad():
        for p in m.parameters():
            p.add_(torch.randn_like(p) * 0.3)
    g = torch.Generator().manual_seed(0)
    X = torch.nn.functional.one_hot(torch.randint(0, 4, (3, 90), generator=g), 4).permute(0, 2, 1).float()
    ctl = torch.rand(3, 3, 90, generator=g) * 4
    _, cr = reverse_complement_inputs(X, ctl, [1, 2])
    torch.testing.assert_close(cr, ctl[:, [0, 2, 1]].flip(-1))
    p1, c1 = predict(m, X, ctl, reverse_complement_average=True, control_groups=[1, 2])
    p2, c2 = predict(m, X.flip(-1).flip(-2), cr, reverse_complement_average=True, control_groups=[1, 2])
    torch.testing.assert_close(p2[:, [0, 2, 1]].flip(-1), p1, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(c1, c2, atol=1e-5, rtol=1e-5)
    with torch.no_grad():
        pf, _ = m(X, ctl)
        pw, _ = m(X.flip(-1).flip(-2), ctl.flip(1).flip(-1))  # upstream: all control channels flipped
    # the profile changes; the count head sees only log(1 + Σ controls), which no permutation moves
    assert not torch.allclose((pf + pw[:, [0, 2, 1]].flip(-1)) / 2, p1, atol=1e-3)
