"""One exporter interface for every target (optimum style: exporters/<target>.py behind a base).

The base does the shared work in a fixed order — check the output folder, quantize with the
target's own quantizer, convert, write atomically, write the manifest — so a target only says
how to turn a (possibly quantized) program into its file format.
"""

from __future__ import annotations

import dataclasses
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from edge.errors import EdgeError
from edge.io import atomic_path, ensure_writable_dir, write_json
from edge.manifest import build_manifest, manifest_path
from edge.models import LoadedModel
from edge.progress import say
from quantize import PTQConfig, quantize


@dataclass
class Converted:
    """What a target's ``convert`` reports back besides the file it wrote."""

    io: dict[str, Any]
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Option:
    """A target-specific export option (becomes ``--name-with-dashes`` on ``edge export <target>``)."""

    name: str
    default: str
    choices: tuple[str, ...]
    help: str


@dataclass
class ExportResult:
    artifact: Path
    manifest_path: Path
    manifest: dict[str, Any]
    reference: Any  # the torch program the artifact should reproduce (fake-quant for int8)
    seconds: float


class Exporter(ABC):
    name: ClassVar[str]
    suffix: ClassVar[str]
    precisions: ClassVar[tuple[str, ...]]
    quantized_precisions: ClassVar[tuple[str, ...]] = ("int8",)
    quantizer: ClassVar[str | None] = None  # name in quantize.quantizers
    versions: ClassVar[tuple[str, ...]] = ("torch",)
    options: ClassVar[tuple[Option, ...]] = ()
    # Options of the artifact's runtime for the parity run (not recorded in the artifact).
    runtime_options: ClassVar[tuple[Option, ...]] = ()
    default_observer: ClassVar[str] = "histogram"  # activation observer when the config names none

    def __init__(self, **opts: str) -> None:
        known = {o.name: o for o in self.options}
        unknown = sorted(set(opts) - set(known))
        if unknown:
            raise EdgeError(f"{self.name} has no option {', '.join(unknown)} (options: {', '.join(known) or 'none'})")
        self.opts = {name: opts.get(name, o.default) for name, o in known.items()}
        for name, value in self.opts.items():
            if value not in known[name].choices:
                raise EdgeError(f"{self.name}: {name} must be one of {', '.join(known[name].choices)}, got {value!r}")

    def validate(self, precision: str, quant: PTQConfig | None) -> None:
        """Reject a precision/option combination the target cannot build, before any work."""
        return None

    def effective_config(self, config: PTQConfig) -> PTQConfig:
        """The config as this target applies it (recorded in the manifest as such)."""
        return config

    def simulation(self, model: LoadedModel, program: Any, precision: str) -> Any:
        """The PyTorch program whose outputs the artifact should reproduce (default: the one converted)."""
        return program

    def resolve_config(self, config: PTQConfig) -> PTQConfig:
        """The config with "the target's default" observer filled in, as this target applies it."""
        if config.observer is None:  # recorded as the observer actually used
            config = dataclasses.replace(config, observer=self.default_observer)
        return self.effective_config(config)

    def program(self, model: LoadedModel, precision: str, calib_images: Any, qcfg: PTQConfig | None) -> Any:
        """What ``convert`` lowers: the float module, or the target quantizer's q/dq graph."""
        if precision not in self.quantized_precisions or self.quantizer is None:
            return model.module
        assert qcfg is not None
        say(f"{self.name}: quantizing with the {self.quantizer} quantizer on {qcfg.calib_size} images")
        return quantize(model.module, model.example_input(), calib_images, qcfg, self.quantizer)

    def reference_program(self, model: LoadedModel, precision: str, calib_images: Any,
                          qcfg: PTQConfig | None) -> Any:
        """The PyTorch program an existing artifact of this recipe should reproduce (for reuse)."""
        return self.simulation(model, self.program(model, precision, calib_images, qcfg), precision)

    def filename(self, model: LoadedModel, precision: str) -> str:
        base = model.spec.name.replace("/", "_").replace(".", "_")
        mode = "" if model.spec.mode == "classifier" else f"-{model.spec.mode}"
        return f"{base}{mode}-{precision}{self.suffix}"

    @abstractmethod
    def check(self) -> None:
        """Raise EdgeError (with an install hint) when the target's tooling is missing."""

    @abstractmethod
    def convert(self, model: LoadedModel, program: Any, precision: str, dest: Path) -> Converted:
        """Write the artifact for ``program`` (the float module or the quantized graph) to ``dest``."""

    def export(
        self,
        model: LoadedModel,
        precision: str,
        out_dir: Path,
        calib_images: Any = None,
        quant: PTQConfig | None = None,
        qat: Any = None,
    ) -> ExportResult:
        """``qat``: a quantize.qat.QATProgram; the int8 artifact is exported from the QAT model
        (trained with this target's scheme) instead of being quantized here."""
        if qat is not None:
            return self._export_qat(model, precision, out_dir, calib_images, qat)
        if precision not in self.precisions:
            raise EdgeError(
                f"{self.name} does not export precision {precision!r}; choose one of {', '.join(self.precisions)}"
            )
        quantized = precision in self.quantized_precisions
        if quantized and calib_images is None:
            raise EdgeError(f"{self.name} {precision} needs calibration images (--calib DIR)")
        if not quantized and quant is not None:
            raise EdgeError(f"a quantization config was given for {precision}, which is not quantized")
        qcfg = self.resolve_config(quant or PTQConfig()) if quantized else None
        self.validate(precision, qcfg)
        self.check()
        ensure_writable_dir(out_dir)
        t0 = time.perf_counter()
        self.calib_images = calib_images  # for targets whose converter calibrates itself (TFLite)
        program = self.program(model, precision, calib_images, qcfg)
        method = {"method": "ptq"} if quantized else {}
        return self._write(model, program, precision, out_dir, qcfg, t0, method,
                           self.simulation(model, program, precision))

    def _export_qat(self, model: LoadedModel, precision: str, out_dir: Path, calib_images: Any,
                    qat: Any) -> ExportResult:
        if precision not in self.quantized_precisions:
            raise EdgeError(f"--qat exports int8: {precision} is not a quantized precision of {self.name}")
        if qat.target != self.name:
            raise EdgeError(f"the QAT checkpoint was trained for {qat.target}, not {self.name}")
        if self.quantizer is None and calib_images is None:  # the converter calibrates (TFLite)
            raise EdgeError(f"{self.name} {precision} from a QAT model needs calibration images (--calib DIR)")
        method = {"method": "qat", "qat_checkpoint_sha256": qat.checkpoint_sha256, "qat_step": qat.step}
        ptq = qat.config.ptq
        if self.quantizer is None:
            # the converter calibrates the QAT-adapted weights: with this target's default observer,
            # as its PTQ does (left unresolved, TFLite fell back to the converter's min/max ranges)
            ptq = self.resolve_config(ptq)
            method["converter_observer"] = ptq.observer
        self.validate(precision, ptq)
        self.check()
        ensure_writable_dir(out_dir)
        self.calib_images = calib_images
        say(f"{self.name}: exporting the QAT model (step {qat.step}, {qat.quantizer} scheme)")
        return self._write(model, qat.program, precision, out_dir, qat.config, time.perf_counter(), method,
                           qat.reference)

    def _write(self, model: LoadedModel, program: Any, precision: str, out_dir: Path, qcfg: Any, t0: float,
               method: dict[str, Any], reference: Any) -> ExportResult:
        artifact = out_dir / self.filename(model, precision)
        say(f"{self.name}: converting to {artifact.name}")
        with atomic_path(artifact) as tmp:
            conv = self.convert(model, program, precision, tmp)
        seconds = time.perf_counter() - t0
        extra = {**method, **({"options": self.opts} if self.opts else {}), **conv.extra}
        manifest = build_manifest(model, artifact, self.name, precision, qcfg, conv.io, seconds, self.versions, extra)
        mpath = manifest_path(artifact)
        try:
            write_json(mpath, manifest)
        except OSError:
            artifact.unlink(missing_ok=True)
            raise
        return ExportResult(artifact, mpath, manifest, reference, seconds)
