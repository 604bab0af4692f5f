"""exporters/_xnnpack_rewrites.py: a head's ``x.mean((2, 3))`` becomes mean(keepdim) + reshape, exact
in float and in a PT2E int8 graph, so XNNPACK takes it (the matrix found EfficientFormerV2's left out)."""

from __future__ import annotations

import pytest
import torch


class _Head(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.fc = torch.nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu(self.conv(x)).mean((2, 3)))


@pytest.mark.parametrize("quantized", [False, True], ids=["float", "int8"])
def test_spatial_mean_is_rewritten_exactly(quantized: bool) -> None:
    from exporters._xnnpack_rewrites import keepdim_means, spatial_means
    from quantize import PTQConfig, quantize

    torch.manual_seed(0)
    module, x = _Head().eval(), torch.randn(1, 3, 16, 16)
    if quantized:
        gm = quantize(module, x, torch.randn(8, 3, 16, 16), PTQConfig(calib_size=8, float_head=False,
                                                                           observer="minmax"), "xnnpack")
    else:
        gm = torch.export.export(module, (x,), strict=False).module()
    before = gm(x)
    assert spatial_means(gm) == 1
    assert keepdim_means(gm) == 1 and spatial_means(gm) == 0
    torch.testing.assert_close(gm(x), before, rtol=0, atol=1e-6)


def test_executorch_delegates_the_mean(tmp_path) -> None:
    """The lowered program keeps no mean outside XNNPACK (it did before the rewrite)."""
    from executorch.exir import to_edge_transform_and_lower

    from exporters._xnnpack_rewrites import keepdim_means
    from exporters.executorch import delegation_counts, xnnpack_partitioner

    x = torch.randn(1, 3, 16, 16)
    counts = []
    for rewrite in (False, True):
        gm = torch.export.export(_Head().eval(), (x,), strict=False).module()
        if rewrite:
            keepdim_means(gm)
        lowered = to_edge_transform_and_lower(torch.export.export(gm, (x,), strict=False),
                                              partitioner=[xnnpack_partitioner()])
        counts.append(delegation_counts(lowered.exported_program().graph_module)["non_delegated_by_op"])
    assert any("mean" in op for op in counts[0])
    assert not any("mean" in op for op in counts[1])
