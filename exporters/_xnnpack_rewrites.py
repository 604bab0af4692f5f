"""Graph rewrites that keep ops inside ExecuTorch's XNNPACK delegate, each exact in float (up to
float summation order). ExecuTorch 1.5.1's partitioner has no config for some ops timm's families use;
each rewrite spells one of them with ops it does take. ``REWRITES`` lists them; the exporter applies
every one that finds something, then exports the module again.

Means. XNNPACK runs ``mean`` over H and W only as global average pooling, whose output keeps the
two unit dims, so ExecuTorch's partitioner leaves ``x.mean((2, 3))`` (keepdim False: EfficientFormerV2,
EfficientViT and other heads written by hand) outside the delegate, where it runs in ExecuTorch's
portable kernels and splits the graph. Written as ``mean(keepdim=True)`` followed by a reshape, both
are delegated. In a PT2E int8 graph (dq → mean → q) the reshape goes after the q, between a
dq/q pair of the same parameters, so the quantized mean keeps its pattern.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Any


def _is_quant(node: Any) -> bool:
    return node.op == "call_function" and "quantize_per_tensor" in str(node.target) and \
        "dequantize" not in str(node.target)


def _is_dequant(node: Any) -> bool:
    return getattr(node, "op", None) == "call_function" and \
        str(node.target).endswith("dequantize_per_tensor.default")


def _count(gm: Any, match: Callable[[Any], bool]) -> int:
    return sum(match(n) for n in gm.graph.nodes)


def _each(gm: Any, match: Callable[[Any], bool], rewrite: Callable[[Any, Any], None]) -> int:
    """``rewrite(gm, node)`` for every node ``match`` takes (``gm`` changed in place), then one lint
    and recompile; returns how many. The caller exports ``gm`` again, which re-traces it."""
    done = 0
    for node in list(gm.graph.nodes):
        if match(node):
            rewrite(gm, node)
            done += 1
    if done:
        gm.graph.lint()
        gm.recompile()
    return done


def _shape(node: Any) -> list[int] | None:
    """A node's traced shape; through a PT2E quantize/dequantize, which may carry none, its input's."""
    val = getattr(node, "meta", {}).get("val")
    if val is not None and hasattr(val, "shape"):
        return [int(d) for d in val.shape]
    if getattr(node, "op", None) == "call_function" and "quantize_per_tensor" in str(node.target):
        return _shape(node.args[0])
    return None


def _replace_items(gm: Any, node: Any, piece: Callable[[int], Any]) -> None:
    """Each ``node[i]`` (a getitem user of a multi-output node) replaced by ``piece(i)``, built just
    before it; then ``node`` itself is dropped."""
    for user in list(node.users):
        with gm.graph.inserting_before(user):
            new = piece(user.args[1])
        user.replace_all_uses_with(new)
        gm.graph.erase_node(user)
    gm.graph.erase_node(node)


def _spatial_mean(node: Any) -> bool:
    """``aten.mean.dim`` over H and W of a 4-D tensor, without keepdim (the rank is read from the
    mean's own output: a dequantize inserted by PT2E may carry no shape)."""
    import torch

    if node.op != "call_function" or node.target is not torch.ops.aten.mean.dim:
        return False
    out = node.meta.get("val")
    keep = node.args[2] if len(node.args) > 2 else node.kwargs.get("keepdim", False)
    if out is None or out.dim() != 2 or keep or node.kwargs.get("dtype") is not None:
        return False
    return sorted(int(d) % 4 for d in node.args[1]) == [2, 3]


def spatial_means(gm: Any) -> int:
    return _count(gm, _spatial_mean)


def keepdim_means(gm: Any) -> int:
    """Rewrite every spatial ``mean`` of ``gm`` (a torch.fx GraphModule, changed in place) to
    keepdim + reshape; return how many."""
    return _each(gm, _spatial_mean, _keepdim_mean)


def _keepdim_mean(gm: Any, node: Any) -> None:
    import torch

    q_dq = torch.ops.quantized_decomposed
    channels = int(node.meta["val"].shape[1])
    node.args = (node.args[0], [2, 3], True)
    users = list(node.users)
    anchor = users[0] if len(users) == 1 and _is_quant(users[0]) else node
    with gm.graph.inserting_after(anchor):
        if anchor is node:
            out = first = gm.graph.call_function(torch.ops.aten.reshape.default, (node, [-1, channels]))
        else:
            params = tuple(anchor.args[1:])
            first = gm.graph.call_function(q_dq.dequantize_per_tensor.default, (anchor, *params))
            with gm.graph.inserting_after(first):
                flat = gm.graph.call_function(torch.ops.aten.reshape.default, (first, [-1, channels]))
            with gm.graph.inserting_after(flat):
                out = gm.graph.call_function(q_dq.quantize_per_tensor.default, (flat, *params))
    anchor.replace_all_uses_with(out, delete_user_cb=lambda user: user is not first)


# --- other means -----------------------------------------------------------------------------------
# A mean over any other dims (LeViT pools its tokens: the mean over dim 1 of a 3-D tensor) is
# the same global average pooling once the reduced dims are moved last and the tensor is 4-D:
# permute, reshape to (N, kept, reduced, 1), mean over (2, 3) with keepdim, reshape back.

def _other_mean(node: Any) -> bool:
    import torch

    if node.op != "call_function" or node.target is not torch.ops.aten.mean.dim or node.kwargs.get("dtype"):
        return False
    shape, out = _shape(node.args[0]), _shape(node)
    if shape is None or out is None or not 2 <= len(shape) <= 4:
        return False
    dims = sorted({int(d) % len(shape) for d in node.args[1]})
    spatial = len(shape) == 4 and dims == [2, 3]
    return 0 not in dims and not spatial


def other_means(gm: Any) -> int:
    return _count(gm, _other_mean)


def pooled_means(gm: Any) -> int:
    """Rewrite every mean over dims other than a 4-D tensor's H, W (and not the batch) as a
    global average pooling between a permute and reshapes; return how many."""
    return _each(gm, _other_mean, _pooled_mean)


def _pooled_mean(gm: Any, node: Any) -> None:
    import math

    import torch

    aten, graph = torch.ops.aten, gm.graph
    x = node.args[0]
    shape, out = _shape(x), _shape(node)
    assert shape is not None and out is not None
    dims = sorted({int(d) % len(shape) for d in node.args[1]})
    kept = [d for d in range(1, len(shape)) if d not in dims]
    with graph.inserting_before(node):
        moved = graph.call_function(aten.permute.default, (x, [0, *kept, *dims]))
        flat = graph.call_function(aten.reshape.default, (moved, [-1, math.prod(shape[d] for d in kept),
                                                                  math.prod(shape[d] for d in dims), 1]))
        pooled = graph.call_function(aten.mean.dim, (flat, [2, 3], True))
        # the leading dim as -1: a PT2E program's shapes were traced at its calibration batch
        result = graph.call_function(aten.reshape.default, (pooled, [-1, *out[1:]]))
    node.replace_all_uses_with(result)
    graph.erase_node(node)


# --- strided slices --------------------------------------------------------------------------------
# XNNPACK's slice takes unit strides only, so LeViT's ``x[:, ::2, ::2]`` subsampling stayed out.
# Over a dim whose size the step divides, ``x[::s]`` is the first of each group of s: reshape the
# dim to (n / s, s), take the unit-stride slice [0:1] of the new dim, reshape it away.

def _strided_slice(node: Any) -> bool:
    import torch

    if node.op != "call_function" or node.target is not torch.ops.aten.slice.Tensor:
        return False
    args = [*node.args, *[None] * 5][:5]
    dim, start, end, step = (args[1] or 0), (args[2] or 0), args[3], (args[4] or 1)
    shape = _shape(node.args[0])
    if step <= 1 or shape is None or _shape(node) is None:
        return False
    n = shape[int(dim) % len(shape)]
    return int(dim) % len(shape) != 0 and start == 0 and (end is None or end >= n) and n % step == 0


def strided_slices(gm: Any) -> int:
    return _count(gm, _strided_slice)


def unit_stride_slices(gm: Any) -> int:
    """Rewrite every whole-dim strided ``slice`` whose step divides the dim (not the batch) as
    reshape + unit-stride slice + reshape; return how many."""
    return _each(gm, _strided_slice, _unit_stride_slice)


def _unit_stride_slice(gm: Any, node: Any) -> None:
    import torch

    aten, graph = torch.ops.aten, gm.graph
    x, shape, out = node.args[0], _shape(node.args[0]), _shape(node)
    assert shape is not None and out is not None
    dim, step = int(node.args[1]) % len(shape), int(node.args[4])
    grouped = [-1, *shape[1:dim], shape[dim] // step, step, *shape[dim + 1:]]
    with graph.inserting_before(node):
        first = graph.call_function(aten.slice.Tensor,
                                    (graph.call_function(aten.reshape.default, (x, grouped)), dim + 1, 0, 1))
        result = graph.call_function(aten.reshape.default, (first, [-1, *out[1:]]))
    node.replace_all_uses_with(result)
    graph.erase_node(node)


# --- LayerNorm -------------------------------------------------------------------------------------
# No XNNPACK config takes native_layer_norm (pytorch/executorch#20293 adds the runtime op), so
# ConvNeXt, EdgeNeXt, MobileViT and EfficientViT left every LayerNorm to the portable kernels, each
# a partition boundary. Over the last dim it is mean, subtract, square, mean, rsqrt, scale: the
# means are a linear layer whose weight is 1/C (XNNPACK's fully-connected), the rest elementwise.

def _last_dim_layer_norm(node: Any) -> bool:
    import torch

    if node.op != "call_function" or node.target is not torch.ops.aten.layer_norm.default:
        return False
    return len(node.args[1]) == 1 and node.meta.get("val") is not None  # (its input's may have none)


def layer_norms(gm: Any) -> int:
    return _count(gm, _last_dim_layer_norm)


def decompose_layer_norms(gm: Any) -> int:
    """Rewrite every ``layer_norm`` over the last dim of ``gm`` (changed in place); return how many."""
    return _each(gm, _last_dim_layer_norm, _decompose_layer_norm)


def _decompose_layer_norm(gm: Any, node: Any) -> None:
    import torch

    aten, graph = torch.ops.aten, gm.graph
    x, (channels,) = node.args[0], node.args[1]
    weight = node.args[2] if len(node.args) > 2 else node.kwargs.get("weight")
    bias = node.args[3] if len(node.args) > 3 else node.kwargs.get("bias")
    eps = node.args[4] if len(node.args) > 4 else node.kwargs.get("eps", 1e-5)
    k = 0
    while hasattr(gm, f"_edge_mean_{k}"):
        k += 1
    gm.register_buffer(f"_edge_mean_{k}", torch.full((1, int(channels)), 1.0 / int(channels),
                                                      dtype=node.meta["val"].dtype))
    with graph.inserting_before(node):
        mean_w = graph.get_attr(f"_edge_mean_{k}")
        centred = graph.call_function(aten.sub.Tensor, (x, graph.call_function(aten.linear.default, (x, mean_w))))
        var = graph.call_function(aten.linear.default,
                                  (graph.call_function(aten.mul.Tensor, (centred, centred)), mean_w))
        inv = graph.call_function(aten.rsqrt.default, (graph.call_function(aten.add.Tensor, (var, eps)),))
        out = graph.call_function(aten.mul.Tensor, (centred, inv))
        if weight is not None:
            out = graph.call_function(aten.mul.Tensor, (out, weight))
        if bias is not None:
            out = graph.call_function(aten.add.Tensor, (out, bias))
    node.replace_all_uses_with(out)
    graph.erase_node(node)


# --- split -----------------------------------------------------------------------------------------
# split / split_with_sizes / chunk (attention's q, k, v; EfficientViT, LeViT, EdgeNeXt) has no XNNPACK
# config; each of its outputs is a unit-stride slice, which XNNPACK takes.

def _split(node: Any) -> bool:
    import torch

    aten = torch.ops.aten
    if node.op != "call_function" or node.target not in (aten.split.Tensor, aten.split_with_sizes.default,
                                                         aten.chunk.default):
        return False
    sized = node.target is aten.split_with_sizes.default or isinstance(node.meta.get("val"), (list, tuple))
    return (sized
            and all(u.op == "call_function" and u.target is operator.getitem for u in node.users))


def splits(gm: Any) -> int:
    return _count(gm, _split)


def slice_splits(gm: Any) -> int:
    """Rewrite every ``split`` of ``gm`` whose outputs are taken by index into slices; return how many."""
    return _each(gm, _split, _slice_split)


def _slice_split(gm: Any, node: Any) -> None:
    import torch

    x = node.args[0]
    dim = node.args[2] if len(node.args) > 2 else node.kwargs.get("dim", 0)
    sizes = ([int(n) for n in node.args[1]] if node.target is torch.ops.aten.split_with_sizes.default
             else [int(t.shape[dim]) for t in node.meta["val"]])
    starts = [sum(sizes[:i]) for i in range(len(sizes))]
    q_dq = torch.ops.quantized_decomposed

    def piece(i: int) -> Any:
        out = gm.graph.call_function(torch.ops.aten.slice.Tensor, (x, dim, starts[i], starts[i] + sizes[i]))
        if not _is_dequant(x):
            return out
        # int8: XNNPACK takes a quantized slice only between a dq and a q of the same parameters;
        # each output is then requantized to its own (one delegated convert)
        params = tuple(x.args[1:])
        out = gm.graph.call_function(q_dq.quantize_per_tensor.default, (out, *params))
        return gm.graph.call_function(q_dq.dequantize_per_tensor.default, (out, *params))

    _replace_items(gm, node, piece)


# --- unbind ----------------------------------------------------------------------------------------
# Attention's ``q, k, v = qkv.unbind(0)`` (MobileViT, timm's Attention) lowers to split + squeeze,
# neither in XNNPACK; each output is a unit-stride slice and a reshape, which XNNPACK takes.

def _unbind(node: Any) -> bool:
    import torch

    return (node.op == "call_function" and node.target is torch.ops.aten.unbind.int
            and isinstance(node.meta.get("val"), (list, tuple))
            and all(u.op == "call_function" and u.target is operator.getitem for u in node.users))


def unbinds(gm: Any) -> int:
    return _count(gm, _unbind)


def slice_unbinds(gm: Any) -> int:
    """Rewrite every ``unbind`` of ``gm`` taken by index into slice + reshape; return how many."""
    return _each(gm, _unbind, _slice_unbind)


def _slice_unbind(gm: Any, node: Any) -> None:
    import torch

    aten, x = torch.ops.aten, node.args[0]
    dim = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim", 0)

    def piece(i: int) -> Any:
        shape = [int(d) for d in node.meta["val"][i].shape]
        one = gm.graph.call_function(aten.slice.Tensor, (x, dim, i, i + 1))
        # the leading dim as -1: a PT2E program's shapes were traced at its calibration batch
        return gm.graph.call_function(aten.reshape.default, (one, [-1, *shape[1:]] if shape else shape))

    _replace_items(gm, node, piece)


# --- batched matmul --------------------------------------------------------------------------------
# A 4-D ``q @ k.transpose(-2, -1)`` lowers to expand + view + bmm; the expand (a no-op here: the
# batch dims already match) has no XNNPACK config and splits the delegate. Reshaped to 3-D
# around a bmm, the same product is one delegated op.

def _batched_matmul(node: Any) -> bool:
    import torch

    if node.op != "call_function" or node.target is not torch.ops.aten.matmul.default:
        return False
    vals = [getattr(a, "meta", {}).get("val") for a in node.args[:2]]
    if vals[0] is None or vals[1] is None:
        return False
    a, b = vals[0].shape, vals[1].shape
    return len(a) == len(b) >= 4 and tuple(a[:-2]) == tuple(b[:-2])


def batched_matmuls(gm: Any) -> int:
    return _count(gm, _batched_matmul)


def bmm_matmuls(gm: Any) -> int:
    """Rewrite every batched ``matmul`` of rank ≥ 4 with matching batch dims into reshape + bmm +
    reshape; return how many."""
    return _each(gm, _batched_matmul, _bmm_matmul)


def _bmm_matmul(gm: Any, node: Any) -> None:
    import torch

    aten, (a, b) = torch.ops.aten, node.args[:2]
    sa, sb = ([int(d) for d in v.meta["val"].shape] for v in (a, b))
    with gm.graph.inserting_before(node):
        a3 = gm.graph.call_function(aten.reshape.default, (a, [-1, sa[-2], sa[-1]]))
        b3 = gm.graph.call_function(aten.reshape.default, (b, [-1, sb[-2], sb[-1]]))
        out = gm.graph.call_function(aten.bmm.default, (a3, b3))
        # the leading dim as -1, as in unbind's reshape
        out = gm.graph.call_function(aten.reshape.default, (out, [-1, *sa[1:-1], sb[-1]]))
    node.replace_all_uses_with(out)
    gm.graph.erase_node(node)


# --- L2 norms ---------------------------------------------------------------------------------------
# ``F.normalize`` (EdgeNeXt's cross-covariance attention) is ``x / norm(x).clamp_min(eps).expand_as(x)``.
# The norm lowers to pow, sum and pow(0.5), none of which the partitioner takes, and the expand has
# no config either. The norm is the square root of N times the mean of x·x (mean and sqrt are
# delegated; the mean becomes a pooling by the rewrite above), and an expand whose users broadcast
# anyway is dropped.

def _l2_norm(node: Any) -> bool:
    import torch

    if node.op != "call_function" or node.target is not torch.ops.aten.linalg_vector_norm.default:
        return False
    order = node.args[1] if len(node.args) > 1 else node.kwargs.get("ord", 2)
    dims = node.args[2] if len(node.args) > 2 else node.kwargs.get("dim")
    return order == 2 and dims is not None and node.kwargs.get("dtype") is None and _shape(node.args[0]) is not None


def l2_norms(gm: Any) -> int:
    return _count(gm, _l2_norm)


def mean_l2_norms(gm: Any) -> int:
    """Rewrite every 2-norm over given dims as sqrt(N · mean(x · x)); return how many."""
    return _each(gm, _l2_norm, _mean_l2_norm)


def _mean_l2_norm(gm: Any, node: Any) -> None:
    import math

    import torch

    aten, x = torch.ops.aten, node.args[0]
    shape = _shape(x)
    assert shape is not None
    dims = [int(d) % len(shape) for d in node.args[2]]
    keep = node.args[3] if len(node.args) > 3 else node.kwargs.get("keepdim", False)
    with gm.graph.inserting_before(node):
        square = gm.graph.call_function(aten.mul.Tensor, (x, x))
        mean = gm.graph.call_function(aten.mean.dim, (square, dims, keep))
        total = gm.graph.call_function(aten.mul.Tensor, (mean, float(math.prod(shape[d] for d in dims))))
        out = gm.graph.call_function(aten.sqrt.default, (total,))
    node.replace_all_uses_with(out)
    gm.graph.erase_node(node)


_BROADCASTING = ("aten.div.Tensor", "aten.mul.Tensor", "aten.add.Tensor", "aten.sub.Tensor")


def _broadcast_expand(node: Any) -> bool:
    """An ``expand_as``/``expand`` whose every user is an element-wise op whose other operand already
    has the expanded shape, so broadcasting gives the same result without it."""
    import torch

    if node.op != "call_function" or node.target not in (torch.ops.aten.expand_as.default,
                                                         torch.ops.aten.expand.default):
        return False
    out = _shape(node)
    if out is None or not node.users:
        return False
    for user in node.users:
        if str(user.target) not in _BROADCASTING or len(user.args) != 2 or user.kwargs:
            return False
        other = user.args[1] if user.args[0] is node else user.args[0]
        if other is node or _shape(other) != out:
            return False
    return True


def broadcast_expands(gm: Any) -> int:
    return _count(gm, _broadcast_expand)


def dropped_expands(gm: Any) -> int:
    """Drop every expand that broadcasting makes redundant; return how many."""
    return _each(gm, _broadcast_expand, _drop_expand)


def _drop_expand(gm: Any, node: Any) -> None:
    node.replace_all_uses_with(node.args[0])
    gm.graph.erase_node(node)


# (finds, rewrites) pairs, applied in order by the ExecuTorch exporter; a rewrite reads shapes from
# the nodes' traced metadata, which the nodes a rewrite adds lack, so the matmul goes before the
# unbind that feeds it
REWRITES: tuple[tuple[Callable[[Any], int], Callable[[Any], int]], ...] = (
    (strided_slices, unit_stride_slices),
    (spatial_means, keepdim_means),
    (l2_norms, mean_l2_norms),
    (broadcast_expands, dropped_expands),
    (other_means, pooled_means),
    (layer_norms, decompose_layer_norms),
    (batched_matmuls, bmm_matmuls),
    (splits, slice_splits),
    (unbinds, slice_unbinds),
)


def rewrite_for_xnnpack(program: Any, export: Callable[[Any], Any], rounds: int = 3) -> tuple[Any, Any]:
    """``program`` and its ``export(program)`` after every rewrite that finds something, applied
    on the module and exported again; again while one still finds something (a rewrite reads the
    traced shapes its input's producer lacks until re-exported: LeViT's two strided slices in a row)."""
    import torch

    ep = export(program)
    for k in range(rounds):
        found = [rewrite for finds, rewrite in REWRITES if finds(ep.graph_module)]
        if not found:
            break
        if k or not isinstance(program, torch.fx.GraphModule):
            program = ep.module()
        for rewrite in found:
            rewrite(program)
        ep = export(program)
    return program, ep
