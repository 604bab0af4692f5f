"""Per-operator time of a `.pte` from ExecuTorch's own ETDump, grouped by XNNPACK operator kind.

Why: when int8 is not much faster than fp32 the question is *which* kernels cost the time;
ETDump records every XNNPACK operator the delegate ran, so no guessing is needed.
"""

from __future__ import annotations

import re
import tempfile
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

from edge._deps import require


def profile_pte(artifact: Path, x: np.ndarray, runs: int = 20, threads: int | None = None) -> dict[str, dict]:
    """{operator kind: {"ms": median per inference summed over instances, "count": instances}}."""
    import torch

    rt = require("executorch.runtime", "profiling a .pte")
    from executorch.devtools import Inspector

    if threads:
        from executorch.extension.pybindings import portable_lib

        portable_lib._unsafe_reset_threadpool(int(threads))
    program = rt.Runtime.get().load_program(Path(artifact), enable_etdump=True, debug_buffer_size=0)
    method = program.load_method("forward")
    inp = torch.from_numpy(np.ascontiguousarray(x[:1], dtype=np.float32))
    for _ in range(runs):
        method.execute([inp])
    with tempfile.TemporaryDirectory() as tmp:
        etdump = Path(tmp) / "run.etdp"
        program.write_etdump_result_to_file(str(etdump), str(Path(tmp) / "debug.bin"))
        inspector = Inspector(etdump_path=str(etdump))
    total: dict[str, float] = defaultdict(float)
    count: Counter[str] = Counter()
    for block in inspector.event_blocks:
        if block.name != "Execute":
            continue
        for ev in block.events:
            if ev.perf_data is None or ev.name in ("Method::execute", "DELEGATE_CALL"):
                continue
            kind = re.sub(r" #\d+$", "", ev.name)
            total[kind] += float(ev.perf_data.p50)
            count[kind] += 1
    return {k: {"ms": round(v, 3), "count": count[k]} for k, v in sorted(total.items(), key=lambda kv: -kv[1])}
