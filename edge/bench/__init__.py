"""`edge bench`: run exported artifacts on real devices (this machine, SSH boards, Android over adb)
and collect one "edge.bench/1" result per (artifact, device). See docs/bench.md.

`device_runner.py` here is copied to the device and must stay self-contained (stdlib + numpy +
the runtime); the rest runs on the host.
"""

from edge.bench.results import load_results, validate_result

__all__ = ["load_results", "validate_result"]
