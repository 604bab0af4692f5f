"""Float vs PTQ vs QAT int8 on the CIFAR-10 reference model, per target, side by side.

For each target: the PTQ int8 artifact and the QAT int8 artifact (QAT trained here for --steps
on CIFAR-10 train images, the target's own scheme), both run on the target's runtime (Core ML:
simulated off macOS) on the same held-out CIFAR-10 test images: top-1 (float's beside it),
top-1 agreement / logit SQNR against float, and the artifact against the program it was
exported from (for QAT: the QAT fake-quant model).

    .venv/bin/python benchmarks/bench_qat.py --steps 200 --targets executorch,tflite,coreml
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def row(name: str, par: dict) -> dict:
    f, q, p = par["vs_float"], par["vs_quantized_program"], par["quantized_program_vs_float"]
    return {"variant": name, "top1": f["top1"], "float_top1": f["ref_top1"], "agree_vs_float": f["agreement_top1"],
            "sqnr_vs_float": f["sqnr_db"],
            "program_top1": p["top1"] if p else None, "program_agree_vs_float": p["agreement_top1"] if p else None,
            "program_sqnr_vs_float": p["sqnr_db"] if p else None,
            "agree_vs_program": q["agreement_top1"] if q else None, "sqnr_vs_program": q["sqnr_db"] if q else None,
            "measured": par["measured"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--targets", default="executorch,tflite,coreml")
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--lr", type=float, default=5e-5)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--ce-weight", type=float, default=0.5)
    ap.add_argument("--train-images", type=int, default=2048)
    ap.add_argument("--eval-size", type=int, default=500)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest on a busy 2-core box)")
    ap.add_argument("--out", type=Path, default=Path("out/bench_qat"))
    args = ap.parse_args()
    os.environ.setdefault("EDGE_QUIET", "1")
    import torch

    torch.set_num_threads(args.threads)
    from edge.models import ModelSpec
    from edge.pipeline import export_and_verify, load_inputs
    from edge.qat import load_qat_program, run_qat
    from edge.reference import REFERENCE_INPUT, cifar, reference_weights
    from quantize import PTQConfig, QATConfig

    spec = ModelSpec(weights=str(reference_weights()), input_size=REFERENCE_INPUT)
    inputs = load_inputs(spec, cifar("train"), 256, eval_data=cifar("test"), eval_size=args.eval_size)
    rows = []
    for target in args.targets.split(","):
        t0 = time.time()
        ptq = export_and_verify(target, inputs, "int8", args.out / target / "ptq", PTQConfig(calib_size=256))
        rows.append({"target": target, **row("ptq", ptq["parity"]), "seconds": round(time.time() - t0)})
        print(json.dumps(rows[-1]), flush=True)
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "results.json").write_text(json.dumps(rows, indent=2))
        t0 = time.time()
        cfg = QATConfig(ptq=PTQConfig(calib_size=256), steps=args.steps, lr=args.lr, batch_size=args.batch_size,
                        ce_weight=args.ce_weight, freeze_observers_after=int(args.steps * 0.75),
                        train_images=args.train_images, eval_images=64)
        ckpt = args.out / target / "qat.pt"
        ckpt.unlink(missing_ok=True)
        info = run_qat(inputs.model, target, cifar("train"), ckpt, cfg, save_every=0)
        train_s = time.time() - t0
        prog = load_qat_program(ckpt, inputs.model, target)
        qat = export_and_verify(target, inputs, "int8", args.out / target / "qat", qat=prog)
        rows.append({"target": target, **row("qat", qat["parity"]), "seconds": round(time.time() - t0),
                     "train_seconds": round(train_s), "loss_first": info["loss_first"], "loss_last": info["loss_last"]})
        print(json.dumps(rows[-1]), flush=True)
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "results.json").write_text(json.dumps(rows, indent=2))
    print(f"\nfbnetv3_b CIFAR-10 reference, 32 px, {args.eval_size} held-out test images; QAT {args.steps} steps "
          f"(batch {args.batch_size}, lr {args.lr}, ce {args.ce_weight}), {args.threads} thread(s)")
    hdr = ("target", "variant", "top1", "float", "agree", "SQNR", "prog top1", "prog agree", "prog SQNR",
           "art~prog agree", "art~prog SQNR", "measured")
    print(" | ".join(hdr))

    def fmt(v: object, pct: bool = False) -> str:
        if v is None:
            return "-"
        if isinstance(v, bool):
            return "yes" if v else "simulated"
        return f"{100 * v:.1f}%" if pct else f"{v:.1f}"

    for r in rows:
        print(" | ".join([r["target"], r["variant"], fmt(r["top1"], True), fmt(r["float_top1"], True),
                          fmt(r["agree_vs_float"], True), fmt(r["sqnr_vs_float"]), fmt(r["program_top1"], True),
                          fmt(r["program_agree_vs_float"], True), fmt(r["program_sqnr_vs_float"]),
                          fmt(r["agree_vs_program"], True), fmt(r["sqnr_vs_program"]), fmt(r["measured"])]))


if __name__ == "__main__":
    main()
