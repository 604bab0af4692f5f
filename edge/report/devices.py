"""Rows from `edge bench` results (edge.bench/1): latency measured on a device, merged into the
report beside the host's rows. Accuracy comes from the host row of the same artifact, if any: the
same bytes (sha256), not the same file name — `ptq` and `ptq+floatK` files share a name."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from edge.manifest import manifest_path
from edge.report.schema import add_note, empty_row


def _artifact_sha256(row: dict[str, Any]) -> str | None:
    """The sha256 the host row's artifact was written with (its manifest's)."""
    if not row.get("artifact") or row.get("device"):
        return None
    try:
        return json.loads(manifest_path(Path(row["artifact"])).read_text()).get("artifact_sha256")
    except (OSError, json.JSONDecodeError):
        return None


def device_rows(results: list[dict[str, Any]], host_rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    by_sha = {sha: r for r in host_rows if (sha := _artifact_sha256(r))}
    rows = []
    for res in results:
        dev = res.get("device") or {}
        row = empty_row(res.get("target") or "unknown", res.get("precision") or "unknown", "device")
        host = by_sha.get(res.get("artifact_sha256") or "")
        if host is not None:
            row.update({k: host[k] for k in ("method", "size_bytes", "export_s", "top1", "top5",
                                             "agreement_top1", "kl", "logit_sqnr_db")})
            add_note(row, "accuracy from the host run of the same artifact")
        else:
            add_note(row, "latency only: this artifact was not evaluated on the host in this report")
        lat = res.get("latency_ms") or {}
        emulated = bool(dev.get("emulated"))
        row.update(artifact=res.get("artifact"), device=dev.get("name"),
                   runtime={"name": res.get("runtime"), "version": res.get("runtime_version")},
                   measured=bool(res.get("ok")) and not emulated)
        if res.get("ok") and not emulated:
            row["latency_ms"] = {"p50": lat.get("p50"), "p90": lat.get("p90"), "min": lat.get("min"),
                                 "runs": res.get("runs"), "threads": res.get("threads")}
        elif emulated:
            add_note(row, "emulated run (qemu): timing is not a device figure")
        else:
            add_note(row, f"device run failed: {res.get('error')}")
        add_note(row, f"device {dev.get('name')}: {dev.get('cpu')}, {dev.get('cores')} cores, {dev.get('os')}")
        rows.append(row)
    return rows
