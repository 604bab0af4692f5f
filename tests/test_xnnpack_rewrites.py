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


class _Tokens(torch.nn.Module):
    """LayerNorm over channels of a feature map (timm's LayerNorm2d) and of tokens, and q/k/v
    split both ways: the ops ExecuTorch's partitioner left out for ConvNeXt, MobileViT, EfficientViT."""

    def __init__(self) -> None:
        super().__init__()
        from timm.layers import LayerNorm2d

        self.conv = torch.nn.Conv2d(3, 12, 3, padding=1)
        self.norm2d, self.norm = LayerNorm2d(12), torch.nn.LayerNorm(12)
        torch.nn.init.normal_(self.norm.weight)
        torch.nn.init.normal_(self.norm.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = self.norm(self.norm2d(self.conv(x)).flatten(2).transpose(1, 2))
        q, k, v = t.split([4, 4, 4], dim=-1)
        a, b = t.split(32, dim=1)
        return torch.cat([(q * k + v).flatten(1), (a + b).flatten(1)], dim=1)


@pytest.mark.parametrize("quantized", [False, True], ids=["float", "int8"])
def test_layer_norm_and_split_rewrites_are_exact(quantized: bool) -> None:
    from exporters._xnnpack_rewrites import decompose_layer_norms, layer_norms, slice_splits, splits
    from quantize import PTQConfig, quantize

    torch.manual_seed(0)
    module, x = _Tokens().eval(), torch.randn(1, 3, 8, 8)
    if quantized:
        gm = quantize(module, x, torch.randn(8, 3, 8, 8), PTQConfig(calib_size=8, float_head=False,
                                                                         observer="minmax"), "xnnpack")
    else:
        gm = torch.export.export(module, (x,), strict=False).module()
    before = gm(x)
    assert (layer_norms(gm), splits(gm)) == (2, 2)
    assert decompose_layer_norms(gm) == 2 and slice_splits(gm) == 2
    assert (layer_norms(gm), splits(gm)) == (0, 0)
    torch.testing.assert_close(gm(x), before, rtol=0, atol=1e-5 * float(before.abs().max()))


def test_executorch_delegates_layer_norm_and_split() -> None:
    """Before the rewrites the partitioner leaves both LayerNorms and both splits out; after, no
    compute op stays outside XNNPACK (layout copies and getitems of the delegate aside)."""
    from executorch.exir import to_edge_transform_and_lower

    from exporters._xnnpack_rewrites import REWRITES
    from exporters.executorch import delegation_counts, xnnpack_partitioner

    x = torch.randn(1, 3, 8, 8)
    counts = []
    for rewrite in (False, True):
        gm = torch.export.export(_Tokens().eval(), (x,), strict=False).module()
        for finds, apply in REWRITES if rewrite else ():
            if finds(gm):
                apply(gm)
        lowered = to_edge_transform_and_lower(torch.export.export(gm, (x,), strict=False),
                                              partitioner=[xnnpack_partitioner()])
        counts.append(delegation_counts(lowered.exported_program().graph_module)["non_delegated_by_op"])
    assert any("layer_norm" in op for op in counts[0]) and any("split" in op for op in counts[0])
    assert not [op for op in counts[1] if not any(k in op for k in ("dim_order", "getitem"))], counts[1]


class _Attention(torch.nn.Module):
    """timm's attention core: qkv.unbind(0) and two 4-D matmuls (MobileViT, EfficientFormerV2)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        qkv = x.reshape(1, 16, 3, 2, 4).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        attn = (q @ k.transpose(-2, -1)).softmax(dim=-1)
        return (attn @ v).transpose(1, 2).reshape(1, 16, 8)


def test_attention_rewrites_are_exact_and_delegated() -> None:
    from executorch.exir import to_edge_transform_and_lower

    from exporters._xnnpack_rewrites import REWRITES, batched_matmuls, unbinds
    from exporters.executorch import delegation_counts, xnnpack_partitioner

    torch.manual_seed(0)
    x = torch.randn(1, 16, 24)
    gm = torch.export.export(_Attention().eval(), (x,), strict=False).module()
    before = gm(x)
    assert (unbinds(gm), batched_matmuls(gm)) == (1, 2)
    for finds, apply in REWRITES:
        if finds(gm):
            apply(gm)
    assert (unbinds(gm), batched_matmuls(gm)) == (0, 0)
    torch.testing.assert_close(gm(x), before, rtol=0, atol=1e-6)
    lowered = to_edge_transform_and_lower(torch.export.export(gm, (x,), strict=False),
                                          partitioner=[xnnpack_partitioner()])
    counts = delegation_counts(lowered.exported_program().graph_module)
    assert counts["delegated_subgraphs"] == 1 and set(counts["non_delegated_by_op"]) <= {"getitem"}, counts


class _Subsample(torch.nn.Module):
    """LeViT's strided token subsampling and token mean, and EdgeNeXt / EfficientViT's ``chunk``."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.fc = torch.nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = torch.relu(self.conv(x)).permute(0, 2, 3, 1)[:, ::2, ::2]
        a, b = t.chunk(2, dim=-1)
        return self.fc(torch.cat([a * b, b], dim=-1).flatten(1, 2).mean(1))


@pytest.mark.parametrize("quantized", [False, True], ids=["float", "int8"])
def test_strided_slice_token_mean_and_chunk_rewrites(quantized: bool) -> None:
    """Exact in float and int8; before them the partitioner leaves the strided slices and the
    token mean out, after them no compute op."""
    from executorch.exir import to_edge_transform_and_lower

    from exporters._xnnpack_rewrites import other_means, rewrite_for_xnnpack, splits, strided_slices
    from exporters.executorch import delegation_counts, xnnpack_partitioner
    from quantize import PTQConfig, quantize

    torch.manual_seed(0)
    x = torch.randn(1, 3, 8, 8)
    counts = []
    for rewrite in (False, True):
        module = _Subsample().eval()
        if quantized:
            gm = quantize(module, x, torch.randn(8, 3, 8, 8), PTQConfig(calib_size=8, float_head=False,
                                                                             observer="minmax"), "xnnpack")
        else:
            gm = torch.export.export(module, (x,), strict=False).module()
        before = gm(x)
        if rewrite:
            assert (strided_slices(gm), other_means(gm), splits(gm)) == (2, 1, 1)
            gm, ep = rewrite_for_xnnpack(gm, lambda p: torch.export.export(p, (x,), strict=False))
            assert (strided_slices(ep.graph_module), other_means(ep.graph_module), splits(ep.graph_module)) == (0, 0, 0)
            with torch.no_grad():
                torch.testing.assert_close(gm(x), before, rtol=0, atol=1e-6 * float(before.abs().max()))
        else:
            ep = torch.export.export(gm, (x,), strict=False)
        lowered = to_edge_transform_and_lower(ep, partitioner=[xnnpack_partitioner()])
        counts.append(delegation_counts(lowered.exported_program().graph_module)["non_delegated_by_op"])
    left = [op for op in counts[0] if not any(k in op for k in ("dim_order", "getitem"))]
    assert any("slice" in op for op in left) and any("mean" in op for op in left), counts[0]
    assert not [op for op in counts[1] if not any(k in op for k in ("dim_order", "getitem"))], counts[1]


class _NormalizedWithGrid(torch.nn.Module):
    """EdgeNeXt's two left-out parts: a positional grid built from the input size alone (full,
    cumsum, sin, a conv) added to the features, and ``F.normalize`` (norm, clamp, expand_as, div)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.grid = torch.nn.Conv2d(2, 8, 1)
        self.fc = torch.nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        ones = torch.zeros(b, h, w, device=x.device, dtype=torch.bool).bitwise_not()
        grid = torch.stack([ones.cumsum(1, dtype=torch.float32), ones.cumsum(2, dtype=torch.float32)], 1)
        y = torch.relu(self.conv(x)) + self.grid(torch.sin(grid / 3.0))
        t = torch.nn.functional.normalize(y.flatten(2).transpose(1, 2), dim=-1)
        return self.fc(t.mean(1))


@pytest.mark.parametrize("quantized", [False, True], ids=["float", "int8"])
def test_l2_normalize_and_size_only_grid_are_delegated(quantized: bool) -> None:
    """The norm rewrite and the dropped expand are exact; the size-only grid is neither quantized
    (no q/dq in its ops, even with the dynamic calibration batch) nor left out: it folds into one
    constant, so no compute op stays outside XNNPACK (before: pow, sum, expand, cumsum, full...)."""
    from executorch.exir import to_edge_transform_and_lower

    from exporters._xnnpack_rewrites import broadcast_expands, l2_norms, rewrite_for_xnnpack
    from exporters.executorch import delegation_counts, fold_constants, xnnpack_partitioner
    from quantize import PTQConfig, quantize

    torch.manual_seed(0)
    x = torch.randn(1, 3, 8, 8)
    module = _NormalizedWithGrid().eval()
    if quantized:
        gm = quantize(module, x, torch.randn(8, 3, 8, 8), PTQConfig(calib_size=8, float_head=False,
                                                                         observer="minmax"), "xnnpack")
        q = [n for n in gm.graph.nodes if "quantize_per_tensor" in str(n.target)]
        # the grid's own ops carry no q/dq: its first quantize is where it meets the features
        grid_ops = (torch.ops.aten.cumsum.default, torch.ops.aten.sin.default, torch.ops.aten.div.Tensor)
        assert not any(a.target in grid_ops for n in q for a in n.all_input_nodes), [n.args[0] for n in q]
        # ... while the data path is int8: the features conv's and the classifier's weights (not the grid conv's)
        assert sum("dequantize_per_channel" in str(n.target) for n in gm.graph.nodes) == 2
    else:
        gm = torch.export.export(module, (x,), strict=False).module()
    before = gm(x)
    assert (l2_norms(gm), broadcast_expands(gm)) == (1, 1)
    gm, ep = rewrite_for_xnnpack(gm, lambda p: torch.export.export(p, (x,), strict=False))
    assert (l2_norms(ep.graph_module), broadcast_expands(ep.graph_module)) == (0, 0)
    with torch.no_grad():
        torch.testing.assert_close(gm(x), before, rtol=0, atol=1e-5 * float(before.abs().max()))
    lowered = to_edge_transform_and_lower(ep, partitioner=[xnnpack_partitioner()], transform_passes=fold_constants())
    left = delegation_counts(lowered.exported_program().graph_module)["non_delegated_by_op"]
    assert not [op for op in left if not any(k in op for k in ("dim_order", "getitem"))], left
