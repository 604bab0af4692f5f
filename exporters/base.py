"""One exporter interface for every target (optimum style: exporters/<target>.py behind a base).

An export is two explicit values, nothing kept on the exporter between calls:

- ``Recipe`` (``Exporter.recipe``): the precision, options and quantization config as this target
  applies them, validated and resolved once, before any model or image is loaded;
- ``ExportRequest`` (``Exporter.request``): the recipe plus the model and the calibration images
  sized for it; ``request.key()`` is the recipe key the report's artifact cache uses.

``Exporter.build`` then does the shared work in a fixed order — check the tooling and the output
folder, quantize with the target's own quantizer, convert, write atomically, write the manifest —
so a target only says how to turn a (possibly quantized) program into its file format.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from edge._deps import installed, require
from edge.errors import EdgeError
from edge.io import atomic_path, ensure_writable_dir, write_json
from edge.manifest import build_manifest, manifest_path, package_versions
from edge.models import LoadedModel
from edge.progress import say
from quantize import AutoConfig, PTQConfig, QATConfig, quantize
from quantize.qat import QATProgram


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


@dataclass(frozen=True)
class Recipe:
    """How one target builds one artifact: everything that decides the file but the model and images."""

    target: str
    precision: str
    options: dict[str, str]
    versions: tuple[str, ...]  # the packages recorded in the manifest (and in the recipe key)
    method: dict[str, Any]  # manifest keys saying how int8 was made ({} for float)
    config: PTQConfig | AutoConfig | QATConfig | None  # the quantization recorded in the manifest, as applied
    # what calibrates int8: the target quantizer's PTQ (or auto) config, or the converter's (calibrates_itself)
    calibration: PTQConfig | AutoConfig | None = None
    qat: QATProgram | None = None

    @property
    def quantized(self) -> bool:
        return self.config is not None


@dataclass(frozen=True)
class ExportRequest:
    """One export, handed from a job to its exporter: the recipe, the model, the images it calibrates on."""

    recipe: Recipe
    model: LoadedModel
    calib_images: Any = None  # NCHW tensor, already sized for the recipe (Exporter.request)
    calib_source: str | None = None  # where the images came from (part of the recipe key)

    def key(self) -> str:
        """The recipe key: equal keys build the same artifact (the report reuses it)."""
        r, m = self.recipe, self.model
        recipe = {
            "model": m.describe(), "input": m.input_shape, "target": r.target, "precision": r.precision,
            "options": r.options, "quant": dataclasses.asdict(r.config) if r.config is not None else None,
            "calib": ({"source": self.calib_source, "images": len(self.calib_images)}
                      if r.quantized and self.calib_images is not None else None),
            "versions": package_versions(r.versions),
        }
        return hashlib.sha256(json.dumps(recipe, sort_keys=True, default=str).encode()).hexdigest()


@dataclass
class ExportResult:
    artifact: Path
    manifest_path: Path
    manifest: dict[str, Any]
    reference: Any  # the torch program the artifact should reproduce (fake-quant for int8)
    seconds: float


def _chosen(program: Any) -> dict[str, Any]:
    """What a recipe chose from the images (quantize.auto's float units), carried in the program's meta."""
    meta = getattr(program, "meta", None)
    return dict(meta.get("edge", {})) if isinstance(meta, dict) else {}


class Exporter(ABC):
    """A target. What it needs is class data, read by the jobs and the registries."""

    name: ClassVar[str]
    title: ClassVar[str]  # the target as messages name it ("exporting to Core ML")
    requires: ClassVar[tuple[str, ...]] = ()  # the Python modules an export imports
    suffix: ClassVar[str]
    precisions: ClassVar[tuple[str, ...]]
    quantized_precisions: ClassVar[tuple[str, ...]] = ("int8",)
    # PT2E quantizer (quantize.quantizers) for PTQ; None where the converter calibrates itself
    quantizer: ClassVar[str | None] = None
    # True: int8 is calibrated by the target's converter on the request's images, not by PT2E
    calibrates_itself: ClassVar[bool] = False
    # the quantizer whose fake-quant scheme QAT trains with for this target (None: no QAT)
    qat_quantizer: ClassVar[str | None] = None
    runtime: ClassVar[str]  # the edge.runtimes name that runs this target's artifacts
    versions: ClassVar[tuple[str, ...]] = ("torch",)
    options: ClassVar[tuple[Option, ...]] = ()
    # Options of the artifact's runtime for the parity run (not recorded in the artifact).
    runtime_options: ClassVar[tuple[Option, ...]] = ()
    default_observer: ClassVar[str] = "percentile"  # activation observer when the config names none
    # how long a build takes relative to an fp32 build of 1, by precision: orders the report's
    # queue of parallel work (longest first)
    build_cost: ClassVar[dict[str, float]] = {}

    def __init__(self, **opts: str) -> None:
        known = {o.name: o for o in self.options}
        unknown = sorted(set(opts) - set(known))
        if unknown:
            raise EdgeError(f"{self.name} has no option {', '.join(unknown)} (options: {', '.join(known) or 'none'})")
        self.opts = {name: opts.get(name, o.default) for name, o in known.items()}
        for name, value in self.opts.items():
            if value not in known[name].choices:
                raise EdgeError(f"{self.name}: {name} must be one of {', '.join(known[name].choices)}, got {value!r}")

    # -- what a target may override -----------------------------------------------------------
    def validate(self, precision: str, quant: PTQConfig | None) -> None:
        """Reject a precision/option combination the target cannot build, before any work."""
        return None

    def effective_config(self, config: PTQConfig) -> PTQConfig:
        """The config as this target applies it (recorded in the manifest as such)."""
        return config

    def simulation(self, request: ExportRequest, program: Any) -> Any:
        """The PyTorch program whose outputs the artifact should reproduce (default: the one converted)."""
        return program

    def check(self, import_them: bool = True) -> None:
        """Raise EdgeError (with an install hint) when the target's tooling is missing; with
        ``import_them`` False only whether it is installed (nothing imported: cheap)."""
        for module in self.requires:
            (require if import_them else installed)(module, f"exporting to {self.title}")

    @abstractmethod
    def convert(self, request: ExportRequest, program: Any, dest: Path) -> Converted:
        """Write the artifact for ``program`` (the float module or the quantized graph) to ``dest``."""

    # -- the shared flow ----------------------------------------------------------------------
    def resolve_config(self, config: PTQConfig) -> PTQConfig:
        """The config with "the target's default" observer filled in, as this target applies it."""
        if config.observer is None and config.activations == "static":  # recorded as the observer actually used
            config = dataclasses.replace(config, observer=self.default_observer)
        return self.effective_config(config)

    def recipe(self, precision: str, quant: PTQConfig | AutoConfig | None = None,
               qat: QATProgram | None = None) -> Recipe:
        """Validate and resolve what to build, once; ``quant`` None means the defaults for int8.
        ``qat``: the int8 artifact comes from this trained QAT model instead of being quantized here."""
        if qat is not None:
            return self._qat_recipe(precision, qat)
        if isinstance(quant, AutoConfig):
            return self._auto_recipe(precision, quant)
        if precision not in self.precisions:
            raise EdgeError(
                f"{self.name} does not export precision {precision!r}; choose one of {', '.join(self.precisions)}"
            )
        quantized = precision in self.quantized_precisions
        if not quantized and quant is not None:
            raise EdgeError(f"a quantization config was given for {precision}, which is not quantized")
        qcfg = self.resolve_config(quant or PTQConfig()) if quantized else None
        self.validate(precision, qcfg)
        return Recipe(self.name, precision, dict(self.opts), self.versions, {"method": "ptq"} if quantized else {},
                      qcfg, qcfg)

    def _auto_recipe(self, precision: str, auto: AutoConfig) -> Recipe:
        if precision not in self.quantized_precisions:
            raise EdgeError(f"--target-agreement applies to int8; {precision} is not a quantized precision of "
                            f"{self.name}")
        if self.quantizer is None or self.calibrates_itself:
            raise EdgeError(f"--target-agreement keeps chosen layers float through a PT2E quantizer; {self.name} "
                            "calibrates in its own converter, which cannot")
        ptq = self.resolve_config(auto.ptq)
        self.validate(precision, ptq)
        cfg = dataclasses.replace(auto, ptq=ptq)
        return Recipe(self.name, precision, dict(self.opts), self.versions, {"method": "auto"}, cfg, cfg)

    def _qat_recipe(self, precision: str, qat: QATProgram) -> Recipe:
        if precision not in self.quantized_precisions:
            raise EdgeError(f"--qat exports int8: {precision} is not a quantized precision of {self.name}")
        if qat.target != self.name:
            raise EdgeError(f"the QAT checkpoint was trained for {qat.target}, not {self.name}")
        method: dict[str, Any] = {"method": "qat", "qat_checkpoint_sha256": qat.checkpoint_sha256,
                                  "qat_step": qat.step}
        ptq = qat.config.ptq
        calibration = None
        if self.calibrates_itself:
            # the converter calibrates the QAT-adapted weights: with this target's default observer,
            # as its PTQ does (left unresolved, TFLite fell back to the converter's min/max ranges)
            ptq = calibration = self.resolve_config(ptq)
            method["converter_observer"] = ptq.observer
        self.validate(precision, ptq)
        return Recipe(self.name, precision, dict(self.opts), self.versions, method, qat.config, calibration, qat)

    def request(self, model: LoadedModel, recipe: Recipe, calib_images: Any = None,
                calib_source: str | None = None) -> ExportRequest:
        """The request for ``recipe``, with the calibration images it uses — sized here, once.

        A PT2E quantizer calibrates on the first ``calib_size`` images and needs that many; a
        converter that calibrates itself takes the set as the caller loaded it."""
        cal = recipe.calibration
        if cal is None:
            return ExportRequest(recipe, model, calib_images, calib_source)
        if calib_images is None:
            what = "from a QAT model " if recipe.qat is not None else ""
            raise EdgeError(f"{self.name} {recipe.precision} {what}needs calibration images (--calib DIR)")
        if not self.calibrates_itself:
            if len(calib_images) < cal.calib_size:
                raise EdgeError(f"calibration needs {cal.calib_size} images but only {len(calib_images)} "
                                "could be read")
            calib_images = calib_images[: cal.calib_size]
        return ExportRequest(recipe, model, calib_images, calib_source)

    def program(self, request: ExportRequest) -> Any:
        """What ``convert`` lowers: the float module, the QAT program, or the target quantizer's q/dq graph."""
        recipe, model = request.recipe, request.model
        if recipe.qat is not None:
            return recipe.qat.program
        if recipe.calibration is None or self.calibrates_itself:
            return model.module
        assert self.quantizer is not None, f"{self.name}: int8 needs a quantizer or calibrates_itself"
        say(f"{self.name}: quantizing with the {self.quantizer} quantizer on {len(request.calib_images)} images")
        return quantize(model.module, model.example_input(), request.calib_images, recipe.calibration, self.quantizer)

    def reference(self, request: ExportRequest, program: Any | None = None) -> Any:
        """The PyTorch program the artifact of ``request`` should reproduce (also for a reused one)."""
        if request.recipe.qat is not None:
            return request.recipe.qat.reference
        return self.simulation(request, self.program(request) if program is None else program)

    def filename(self, model: LoadedModel, precision: str) -> str:
        base = model.spec.name.replace("/", "_").replace(".", "_")
        mode = "" if model.spec.mode == "classifier" else f"-{model.spec.mode}"
        return f"{base}{mode}-{precision}{self.suffix}"

    def build(self, request: ExportRequest, out_dir: Path) -> ExportResult:
        """Write the artifact of ``request`` and its manifest into ``out_dir``."""
        recipe, model = request.recipe, request.model
        self.check()
        ensure_writable_dir(out_dir)
        t0 = time.perf_counter()
        if recipe.qat is not None:
            say(f"{self.name}: exporting the QAT model (step {recipe.qat.step}, {recipe.qat.quantizer} scheme)")
        program = self.program(request)
        artifact = out_dir / self.filename(model, recipe.precision)
        say(f"{self.name}: converting to {artifact.name}")
        with atomic_path(artifact) as tmp:
            conv = self.convert(request, program, tmp)
        seconds = time.perf_counter() - t0
        extra = {**recipe.method, **({"options": recipe.options} if recipe.options else {}), **conv.extra,
                 **_chosen(program)}
        manifest = build_manifest(model, artifact, self.name, recipe.precision, recipe.config, conv.io, seconds,
                                  recipe.versions, extra)
        mpath = manifest_path(artifact)
        try:
            write_json(mpath, manifest)
        except OSError:
            artifact.unlink(missing_ok=True)
            raise
        return ExportResult(artifact, mpath, manifest, self.reference(request, program), seconds)

    def export(self, model: LoadedModel, precision: str, out_dir: Path, calib_images: Any = None,
               quant: PTQConfig | None = None, qat: QATProgram | None = None) -> ExportResult:
        """Recipe, request and build in one call (for callers that hold nothing else)."""
        return self.build(self.request(model, self.recipe(precision, quant, qat), calib_images), out_dir)
