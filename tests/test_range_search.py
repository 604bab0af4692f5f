"""quantize/range_search.py (``--observer search``): each activation range is widened by the factor
whose fake-quant alone keeps the output closest to float, and converts to exactly that scale."""

from __future__ import annotations

import pytest
import torch


class _Net(torch.nn.Module):
    """A late activation with rare large values: a percentile range clips them, and the logits
    depend on them (the trained reference's late blocks behave this way)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.fc = torch.nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.nn.functional.hardswish(self.conv(x))
        return self.fc(y.amax((2, 3)))  # the maxima decide the output: clipping them costs most


def _prepared(images: torch.Tensor):
    from torchao.quantization.pt2e.quantize_pt2e import prepare_pt2e

    from quantize import PTQConfig
    from quantize.ptq import calibrate, export_for_quantization
    from quantize.quantizers import make_quantizer

    torch.manual_seed(0)
    cfg = PTQConfig(calib_size=len(images), observer="search", float_head=False, percentile=99.0)
    prepared = prepare_pt2e(export_for_quantization(_Net().eval(), images[:1]).module(), make_quantizer("xnnpack", cfg))
    calibrate(prepared, images, 8, desc=None)
    return prepared


def test_search_widens_clipped_ranges_and_converts_to_them() -> None:
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e

    from edge.metrics import sqnr_db
    from quantize.range_search import FACTORS, search_ranges, searchable_observers

    torch.manual_seed(1)
    images = torch.randn(32, 3, 8, 8)
    plain = _prepared(images)
    searched = _prepared(images)
    before = {name: obs.calculate_qparams() for name, obs in searchable_observers(searched).items()}
    chosen = search_ranges(searched, images)
    assert set(chosen) == set(before) and all(f in FACTORS for f in chosen.values())
    assert any(f > 1.0 for f in chosen.values()), chosen  # the clipped 99th percentile is widened
    for name, obs in searchable_observers(searched).items():
        scale, zp = obs.calculate_qparams()
        torch.testing.assert_close(scale, before[name][0] * chosen[name], rtol=1e-5, atol=0)
        assert int(zp) == int(before[name][1])
    with torch.no_grad():
        torch.manual_seed(0)
        float_out = _Net().eval()(images).numpy()
        got = {k: convert_pt2e(p)(images).numpy() for k, p in (("plain", plain), ("search", searched))}
    assert sqnr_db(float_out, got["search"]) > sqnr_db(float_out, got["plain"]), \
        {k: sqnr_db(float_out, v) for k, v in got.items()}


def test_percentile_observer_takes_large_tensors() -> None:
    """A tensor past the observer's sample limit is subsampled evenly, end included: at 224 px a
    16-image calibration batch of a 96-channel 112×112 map (19,267,584 values) indexed one past
    its end with float32 spacing."""
    import torch

    from quantize.observers import PercentileObserver

    obs = PercentileObserver(percentile=99.0)
    x = torch.arange(19_267_584, dtype=torch.float32)
    obs(x)
    assert float(obs.min_val) == pytest.approx(0.01 * 19_267_583, rel=1e-3)
    assert float(obs.max_val) == pytest.approx(0.99 * 19_267_583, rel=1e-3)
