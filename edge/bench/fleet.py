"""Many devices at once: a devices file, and one worker thread per device (each device runs its
artifacts one after another, so two runs never share a device)."""

from __future__ import annotations

import json
import shlex
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge.bench.devices import BenchConfig, Device, device_for, transport
from edge.bench.devices.base import check_artifact
from edge.bench.results import failed_result, validate_result
from edge.errors import EdgeError, first_line
from edge.progress import say


@dataclass(frozen=True)
class DeviceSpec:
    """One line of a devices file (or one --device)."""

    url: str
    name: str | None = None
    options: dict[str, str] = field(default_factory=dict)


def parse_devices_file(path: Path) -> list[DeviceSpec]:
    """A devices file: JSON (a list of {"name", "url", option: value}) when it ends in .json, else
    text with one `name url [option=value ...]` per line (shell quoting; `#` starts a comment)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise EdgeError(f"cannot read devices file {path}: {exc.strerror or exc}") from exc
    specs: list[DeviceSpec] = []
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise EdgeError(f"devices file {path} is not JSON: {exc}") from exc
        if not isinstance(data, list):
            raise EdgeError(f"devices file {path}: expected a JSON list of devices")
        for i, d in enumerate(data):
            if not isinstance(d, dict) or not isinstance(d.get("url"), str) or not isinstance(d.get("name"), str):
                raise EdgeError(f"devices file {path}: device {i} needs string 'name' and 'url'")
            opts = {k: str(v) for k, v in d.items() if k not in ("name", "url")}
            specs.append(DeviceSpec(d["url"], d["name"], opts))
    else:
        for n, line in enumerate(text.splitlines(), 1):
            try:
                words = shlex.split(line, comments=True)
            except ValueError as exc:
                raise EdgeError(f"{path}:{n}: {exc}") from exc
            if not words:
                continue
            if len(words) < 2:
                raise EdgeError(f"{path}:{n}: expected `name url [option=value ...]`, got {line.strip()!r}")
            opts = {}
            for w in words[2:]:
                key, eq, value = w.partition("=")
                if not eq or not key:
                    raise EdgeError(f"{path}:{n}: expected option=value, got {w!r}")
                opts[key] = value
            specs.append(DeviceSpec(words[1], words[0], opts))
    if not specs:
        raise EdgeError(f"devices file {path} lists no devices")
    return specs


def build_devices(specs: list[DeviceSpec], defaults: dict[str, str]) -> list[Device]:
    """Devices with the command line's options (where their transport takes them) under each
    device's own. A command-line option that no listed device takes is an error, not ignored."""
    devices, used = [], set()
    for s in specs:
        cls = transport(s.url)
        takes = set(cls.options) if cls else set()
        if cls is not None and cls.scheme == "local":
            takes.discard("python")  # --python names the remote devices' Python
        opts = {k: v for k, v in defaults.items() if k in takes}
        used |= set(opts)
        devices.append(device_for(s.url, name=s.name, **{**opts, **s.options}))
    unused = sorted(set(defaults) - used)
    if unused:
        flags = ", ".join("--" + k.replace("_", "-") for k in unused)
        raise EdgeError(f"{flags} apply to none of the devices given ({', '.join(s.url for s in specs)})")
    names = [d.name for d in devices]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise EdgeError(f"device name(s) {', '.join(dupes)} appear twice; results are merged by device name")
    return devices


def bench_one(device: Device, artifact: Path, cfg: BenchConfig) -> dict[str, Any]:
    """One result row; a device that could not run gives a failed row rather than stopping the rest."""
    manifest = check_artifact(artifact)
    say(f"{device.name}: running {artifact.name} ({device.runner_name})")
    try:
        res = validate_result(device.bench(artifact, cfg), f"result from {device.name}")
    except EdgeError as exc:
        res = failed_result(artifact, device.name, first_line(exc), device.runner_name, manifest.get("target"),
                            manifest.get("precision"), cfg.threads, cfg.warmup, cfg.runs)
    say(f"{device.name}: {artifact.name}: " + ("ok" if res["ok"] else f"failed: {res['error']}"))
    return res


def run_fleet(devices: list[Device], artifacts: list[Path], cfg: BenchConfig) -> list[dict[str, Any]]:
    """Every artifact on every device: devices in parallel, each device's artifacts in turn.
    Results come back in (device, artifact) order."""
    for a in artifacts:
        check_artifact(a)

    def one_device(d: Device) -> list[dict[str, Any]]:
        return [bench_one(d, a, cfg) for a in artifacts]

    with ThreadPoolExecutor(max_workers=max(1, len(devices)), thread_name_prefix="edge-bench") as pool:
        per_device = list(pool.map(one_device, devices))
    return [r for rows in per_device for r in rows]
