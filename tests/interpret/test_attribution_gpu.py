"""Attribution with the model on CUDA (the Triton conv+norm training path): DeepLIFT/SHAP stays
complete and equals the CPU attributions; ISM equals the CPU ISM; inputs may be CPU or CUDA
tensors, results come back on the CPU. ``gpu`` marker: needs CUDA and Triton."""

import pytest
import torch

from strandwise.interpret import LogCountWrapper, ProfileWrapper, deep_lift_shap, saturation_mutagenesis

pytest.importorskip("tangermeme")
pytestmark = pytest.mark.gpu

from test_attribution import _model, _x  # noqa: E402


@pytest.fixture(autouse=True)
def _no_tf32():
    prev = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32 = prev


@pytest.mark.parametrize("kind", ["logcounts", "profile"])
@pytest.mark.parametrize("x_on_gpu", [False, True])
def test_deep_lift_shap_on_gpu_is_complete_and_matches_cpu(kind, x_on_gpu):
    def wrap(mm):
        return LogCountWrapper(mm, group=1) if kind == "logcounts" else ProfileWrapper(mm, group=1)

    m = _model((1, 2))
    X = _x(4, 200)
    cpu = deep_lift_shap(wrap(m), X, n_shuffles=4, random_state=3, batch_size=8)
    w = wrap(m.cuda())
    attr, refs = deep_lift_shap(w, X.cuda() if x_on_gpu else X, n_shuffles=4, random_state=3,
                                batch_size=8, return_references=True)
    assert attr.device.type == "cpu" and attr.shape == X.shape
    with torch.no_grad():
        fx = w(X.cuda())[:, 0].cpu()
        fr = w(refs.reshape(-1, 4, 200).float().cuda())[:, 0].cpu().reshape(4, 4).mean(1)
    gap = ((attr * X).sum(dim=(1, 2)) - (fx - fr)).abs().max().item()
    assert (fx - fr).abs().max() > 0.02
    assert gap < 1e-4, gap
    rel = ((attr - cpu).abs().max() / cpu.abs().max()).item()
    assert rel < 1e-3, rel


def test_ism_on_gpu_matches_cpu():
    m = _model((1, 2))
    X = _x(2, 96)
    cpu = saturation_mutagenesis(LogCountWrapper(m, group=1), X, start=30, end=66, batch_size=32)
    w = LogCountWrapper(m.cuda(), group=1)
    for x in (X, X.cuda()):
        gpu = saturation_mutagenesis(w, x, start=30, end=66, batch_size=32)
        assert gpu.device.type == "cpu"
        torch.testing.assert_close(gpu, cpu, atol=1e-4, rtol=1e-3)
