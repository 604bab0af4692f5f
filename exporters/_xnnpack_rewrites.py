"""Graph rewrites that keep ops inside ExecuTorch's XNNPACK delegate, each exact in float.

Why: XNNPACK runs ``mean`` over H and W only as global average pooling, whose output keeps the
two unit dims, so ExecuTorch's partitioner leaves ``x.mean((2, 3))`` (keepdim False: EfficientFormerV2,
EfficientViT and other heads written by hand) outside the delegate, where it runs in ExecuTorch's
portable kernels and splits the graph. Written as ``mean(keepdim=True)`` followed by a reshape, both
are delegated. In a PT2E int8 graph (dq → mean → q) the reshape goes after the q, between a
dq/q pair of the same parameters, so the quantized mean keeps its pattern.
"""

from __future__ import annotations

from typing import Any


def _is_quant(node: Any) -> bool:
    return node.op == "call_function" and "quantize_per_tensor" in str(node.target) and \
        "dequantize" not in str(node.target)


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
    return sum(_spatial_mean(n) for n in gm.graph.nodes)


def keepdim_means(gm: Any) -> int:
    """Rewrite every spatial ``mean`` of ``gm`` (a torch.fx GraphModule, changed in place) to
    keepdim + reshape; return how many. The caller exports ``gm`` again, which re-traces it."""
    import torch

    q_dq = torch.ops.quantized_decomposed
    done = 0
    for node in list(gm.graph.nodes):
        if not _spatial_mean(node):
            continue
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
        anchor.replace_all_uses_with(out, delete_user_cb=lambda user, first=first: user is not first)
        done += 1
    if done:
        gm.graph.lint()
        gm.recompile()
    return done
