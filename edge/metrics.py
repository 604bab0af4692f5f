"""Fidelity metrics between a reference (float) output and an artifact's output."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def sqnr_db(ref: np.ndarray, out: np.ndarray) -> float:
    """Signal-to-quantization-noise ratio in dB: 10·log10(‖ref‖² / ‖ref − out‖²)."""
    ref64, out64 = ref.astype(np.float64), out.astype(np.float64)
    noise = float(np.sum((ref64 - out64) ** 2))
    signal = float(np.sum(ref64**2))
    if noise == 0.0:
        return float("inf")
    return 10.0 * float(np.log10(max(signal, 1e-30) / noise))


def per_image_sqnr(ref: np.ndarray, out: np.ndarray) -> tuple[float, float | None]:
    """Median over images of each image's SQNR (dB), and the share of the squared error that the
    worst 1 % of images hold (None below 100 images, where 1 % is not one image). Why beside the
    pooled SQNR: the pooled figure is dominated by the images with the largest errors, so a few
    outlier images can hold it low while most images are far better; these two say which case it is."""
    diff = (ref.astype(np.float64) - out.astype(np.float64)).reshape(len(ref), -1)
    noise = np.sum(diff**2, axis=1)
    signal = np.sum(ref.astype(np.float64).reshape(len(ref), -1) ** 2, axis=1)
    total = float(noise.sum())
    if total == 0.0:
        return float("inf"), None  # no error to share out
    with np.errstate(divide="ignore"):
        per = 10.0 * np.log10(np.maximum(signal, 1e-30) / noise)
    if len(noise) < 100:
        return float(np.median(per)), None
    return float(np.median(per)), float(np.sort(noise)[-(len(noise) // 100):].sum() / total)


def latency_summary(times_ms: Sequence[float] | np.ndarray) -> dict[str, float]:
    """p50/p90/min/max/mean of timed runs in ms. One definition for the host harness, the device
    runner, the native runner and the Android app: percentiles by linear interpolation between
    closest ranks (numpy's default)."""
    t = np.asarray(times_ms, dtype=np.float64)
    return {"p50": round(float(np.percentile(t, 50)), 3), "p90": round(float(np.percentile(t, 90)), 3),
            "min": round(float(t.min()), 3), "max": round(float(t.max()), 3), "mean": round(float(t.mean()), 3)}


def max_abs_diff(ref: np.ndarray, out: np.ndarray) -> float:
    return float(np.max(np.abs(ref.astype(np.float64) - out.astype(np.float64))))


def cosine(ref: np.ndarray, out: np.ndarray) -> float:
    a, b = ref.reshape(len(ref), -1).astype(np.float64), out.reshape(len(out), -1).astype(np.float64)
    num = np.sum(a * b, axis=1)
    den = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1) + 1e-30
    return float(np.mean(num / den))


def topk_accuracy(logits: np.ndarray, labels: Sequence[int | None], k: int) -> float | None:
    pairs = [(i, lb) for i, lb in enumerate(labels) if lb is not None]
    if not pairs:
        return None
    idx = np.array([i for i, _ in pairs])
    lab = np.array([lb for _, lb in pairs])
    top = np.argsort(-logits[idx], axis=1)[:, :k]
    return float(np.mean(np.any(top == lab[:, None], axis=1)))


def kl_divergence(ref_logits: np.ndarray, logits: np.ndarray) -> float:
    """Mean KL(softmax(ref) ‖ softmax(out)): how far the predicted distributions moved."""

    def log_softmax(z: np.ndarray) -> np.ndarray:
        z = z.astype(np.float64) - z.max(axis=1, keepdims=True)
        return z - np.log(np.exp(z).sum(axis=1, keepdims=True))

    lp, lq = log_softmax(ref_logits), log_softmax(logits)
    return float(np.mean(np.sum(np.exp(lp) * (lp - lq), axis=1)))


def compare(
    ref: Sequence[np.ndarray], out: Sequence[np.ndarray], labels: Sequence[int | None] | None = None,
    classifier: bool = True,
) -> dict[str, float | None]:
    """All fidelity figures for one artifact against its reference, over every output."""
    if len(ref) != len(out):
        raise ValueError(f"reference has {len(ref)} outputs, artifact {len(out)}")
    for r, o in zip(ref, out, strict=True):
        if r.shape != o.shape:
            raise ValueError(f"output shape {o.shape} differs from the reference's {r.shape}")
    dbs = [sqnr_db(r, o) for r, o in zip(ref, out, strict=True)]
    worst_out = int(np.argmin(dbs))
    res: dict[str, float | None] = {
        "max_abs_diff": max(max_abs_diff(r, o) for r, o in zip(ref, out, strict=True)),
        "sqnr_db": dbs[worst_out],
        "image_sqnr_db_median": None,
        "error_share_worst_1pct": None,
        "cosine": min(cosine(r, o) for r, o in zip(ref, out, strict=True)),
        "agreement_top1": None,
        "kl": None,
        "top1": None,
        "top5": None,
        "ref_top1": None,
        "ref_top5": None,
        "images": float(len(ref[0])),
    }
    res["image_sqnr_db_median"], res["error_share_worst_1pct"] = per_image_sqnr(ref[worst_out], out[worst_out])
    if classifier:
        r, o = ref[0], out[0]
        res["agreement_top1"] = float(np.mean(r.argmax(1) == o.argmax(1)))
        res["kl"] = kl_divergence(r, o)
        if labels is not None:
            k5 = min(5, r.shape[1])
            res["top1"], res["top5"] = topk_accuracy(o, labels, 1), topk_accuracy(o, labels, k5)
            res["ref_top1"], res["ref_top5"] = topk_accuracy(r, labels, 1), topk_accuracy(r, labels, k5)
    return res
