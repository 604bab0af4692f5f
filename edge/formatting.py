"""Human-readable print-outs of the reports `edge export`, `edge demo` and `edge report` return."""

from __future__ import annotations

from typing import Any


def fmt(v: Any, spec: str) -> str:
    return "n/a" if v is None else format(v, spec)


def format_parity(report: dict[str, Any]) -> str:
    lines = [f"{report['target']} {report['precision']}: {report['artifact']}"]
    d = report.get("delegation")
    if d:
        left = ", ".join(f"{k}×{v}" for k, v in d["non_delegated_by_op"].items()) or "none"
        lines.append(f"  delegated ops: {d['delegated_ops']}, left out: {d['non_delegated_ops']} ({left})")
    spec = report.get("spec")
    if spec:
        lines.extend(format_coreml_spec(spec))
    par = report.get("parity")
    if par:
        f = par["vs_float"]
        lines.append(f"  parity on {par['images']} held-out images vs float PyTorch:")
        lines.extend(f"    ({note})" for note in par.get("notes", []))
        lines.append(f"    max |diff| {fmt(f['max_abs_diff'], '.3g')}   SQNR {fmt(f['sqnr_db'], '.1f')} dB"
                     f"   cosine {fmt(f['cosine'], '.5f')}")
        if f["agreement_top1"] is not None:
            lines.append(f"    top-1 agreement {fmt(f['agreement_top1'], '.1%')}   KL {fmt(f['kl'], '.4f')}")
        if f["top1"] is not None:
            lines.append(f"    top-1 {fmt(f['top1'], '.1%')} (float {fmt(f['ref_top1'], '.1%')})   "
                         f"top-5 {fmt(f['top5'], '.1%')} (float {fmt(f['ref_top5'], '.1%')})")
        qf = par.get("quantized_program_vs_float")
        if qf:
            agree = qf["agreement_top1"]
            lines.append(f"  quantization alone (fake-quant PyTorch vs float): SQNR {fmt(qf['sqnr_db'], '.1f')} dB"
                         + (f", top-1 agreement {agree:.1%}" if agree is not None else ""))
        q = par.get("vs_quantized_program")
        if q:
            lines.append(f"  vs the quantized PyTorch program it was lowered from: SQNR {fmt(q['sqnr_db'], '.1f')} dB"
                         + (f", top-1 agreement {q['agreement_top1']:.1%}" if q["agreement_top1"] is not None else ""))
    return "\n".join(lines)


def format_coreml_spec(spec: dict[str, Any]) -> list[str]:
    """The spec facts that show a Core ML package is what its precision promises."""
    ops = spec["op_counts"]
    keys = ("conv", "linear", "quantize", "dequantize", "constexpr_affine_dequantize",
            "constexpr_blockwise_shift_scale", "cast")
    shown = ", ".join(f"{k}×{ops[k]}" for k in keys if k in ops)
    ins = ", ".join(f"{i['name']} {i['dtype']} {i['shape']}" for i in spec["inputs"])
    outs = ", ".join(f"{o['name']} {o['dtype']}" for o in spec["outputs"])
    labels = spec["labels"]
    return [
        f"  spec: {spec['opset']}, {sum(ops.values())} ops ({shown}), {spec['size_bytes'] / 1e6:.2f} MB",
        f"  weights of conv/linear: {', '.join(f'{k}×{v}' for k, v in spec['weights'].items())}",
        f"  activation dtypes: {', '.join(f'{k}×{v}' for k, v in spec['activation_dtypes'].items())}",
        f"  inputs: {ins}; outputs: {outs}" + (f"; {len(labels)} labels" if labels else ""),
    ]
