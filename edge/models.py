"""Model loading: one factory for every timm model, weights source and use (mode).

Why here and not in each exporter: every artifact must come from the *same* module, and carry the
same deployment metadata (input size, mean/std, interpolation, crop) that timm keeps with the model.
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
import socket
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from importlib.util import find_spec
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from edge._deps import require
from edge.errors import EdgeError, first_line
from edge.io import sha256_path
from edge.validate import did_you_mean, input_file

DEFAULT_MODEL = "fbnetv3_b.ra2_in1k"
MODES = ("classifier", "embeddings", "features")
WEIGHT_SOURCES = ("hub", "auto", "random")  # or a path to a local file


@dataclass(frozen=True)
class ModelSpec:
    """What the user asked for; everything else is derived from it and timm's config."""

    name: str = DEFAULT_MODEL
    weights: str = "hub"
    mode: str = "classifier"
    num_classes: int | None = None
    seed: int = 0
    input_size: int | None = None  # square side; None = timm's default for the model

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise EdgeError(f"unknown mode {self.mode!r}; choose one of {', '.join(MODES)}")
        if self.num_classes is not None and self.num_classes < 1:
            raise EdgeError(f"--num-classes must be at least 1, got {self.num_classes} "
                            "(--mode embeddings gives the pooled features without a classifier)")
        if self.input_size is not None and self.input_size < 1:
            raise EdgeError(f"--input-size must be at least 1, got {self.input_size}")


# `@register_model` entry points and `register_model_deprecations(__name__, {...})` keys in timm's
# sources: the names `timm.list_models()` gives (tests/test_models.py checks it), without importing
# timm and torch, so a mistyped name fails at once.
_REGISTERED = re.compile(r"^@register_model\s*\n(?:@.*\n)*def\s+(\w+)", re.M)
_DEPRECATED = re.compile(r"register_model_deprecations\(\s*__name__\s*,\s*\{(.*?)\}\s*\)", re.S)
_KEY = re.compile(r"['\"](\w+)['\"]\s*:")


@functools.cache
def timm_model_names() -> frozenset[str]:
    """Every architecture timm registers, read from its installed sources (empty: timm missing)."""
    spec = find_spec("timm")
    if spec is None or spec.origin is None:
        return frozenset()
    names: set[str] = set()
    for path in (Path(spec.origin).parent / "models").rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        if "register_model" in text:
            names.update(_REGISTERED.findall(text))
            for block in _DEPRECATED.findall(text):
                names.update(_KEY.findall(block))
    return frozenset(names)


def check_spec(spec: ModelSpec) -> None:
    """The model name and the weights source, checked without importing torch or timm."""
    names = timm_model_names()
    arch = spec.name.split(".")[0]
    if names and arch not in names:
        raise EdgeError(f"unknown timm model {spec.name!r}{did_you_mean(arch, names)} (see `timm.list_models()`)")
    if spec.weights not in WEIGHT_SOURCES:
        input_file(spec.weights, "weights file")
    elif spec.weights == "hub" and not _hub_cache_may_hold(arch) and not hub_reachable():
        raise hub_unreachable(spec.name)


def _hub_cache_may_hold(arch: str) -> bool:
    """Whether the local Hugging Face cache has any repository named after ``arch`` (the exact file is
    looked up with timm's config later; this only lets an offline run without it fail at once)."""
    if find_spec("huggingface_hub") is None:
        return False
    from huggingface_hub.constants import HF_HUB_CACHE

    root = Path(HF_HUB_CACHE)
    return root.is_dir() and any(arch in d.name for d in root.glob("models--*"))

@dataclass
class LoadedModel:
    """An eval-mode torch module plus what a deployed artifact must know to feed it."""

    spec: ModelSpec
    module: Any  # torch.nn.Module
    data_config: dict[str, Any]
    output_names: list[str]
    weights_source: str
    weights_sha256: str
    num_classes: int | None
    labels: list[str] | None = None
    notes: list[str] = field(default_factory=list)
    # the classes' identifiers, which a labelled folder's class names are (ImageNet: synsets, while
    # ``labels`` holds their descriptions)
    class_ids: list[str] | None = None

    @property
    def input_shape(self) -> tuple[int, int, int, int]:
        c, h, w = self.data_config["input_size"]
        return (1, int(c), int(h), int(w))

    def example_input(self, batch: int = 1) -> Any:
        import torch

        g = torch.Generator().manual_seed(self.spec.seed)
        return torch.randn((batch, *self.input_shape[1:]), generator=g)

    def transform(self) -> Any:
        """timm's eval transform for this model's data config (resize, crop, normalize)."""
        from timm.data import create_transform

        return create_transform(**self.data_config, is_training=False)

    def preprocessing(self) -> dict[str, Any]:
        dc = self.data_config
        return {
            "input_size": list(dc["input_size"]),
            "interpolation": dc["interpolation"],
            "mean": list(dc["mean"]),
            "std": list(dc["std"]),
            "crop_pct": dc["crop_pct"],
            "crop_mode": dc.get("crop_mode", "center"),
        }

    def describe(self) -> dict[str, Any]:
        return {
            **asdict(self.spec),
            "weights_source": self.weights_source,
            "weights_sha256": self.weights_sha256,
            "num_classes": self.num_classes,
            "outputs": self.output_names,
        }


def state_dict_digest(sd: Mapping[str, Any]) -> str:
    """A content hash of the weights themselves, for sources that are not a single file."""
    h = hashlib.sha256()
    for k in sorted(sd):
        t = sd[k]
        h.update(k.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def read_state_dict(path: Path) -> dict[str, Any]:
    """safetensors, or a torch file loaded with weights_only=True: never arbitrary pickle."""
    import torch

    input_file(path, "weights file")
    if path.suffix == ".safetensors":
        st = require("safetensors.torch", "reading .safetensors weights")
        from safetensors import SafetensorError

        try:
            sd: Any = st.load_file(str(path))
        except (OSError, ValueError, RuntimeError, SafetensorError) as exc:
            raise EdgeError(f"weights file {path} is not a valid safetensors file: {exc}") from exc
    else:
        try:
            sd = torch.load(path, map_location="cpu", weights_only=True)
        except (OSError, EOFError, RuntimeError, ValueError) as exc:
            first = first_line(exc)
            raise EdgeError(f"weights file {path} is not a readable state dict: {first}") from exc
        except Exception as exc:  # noqa: BLE001 - torch raises pickle.UnpicklingError and friends
            raise EdgeError(f"weights file {path} is not a plain state dict ({type(exc).__name__})") from exc
    for key in ("state_dict", "model", "model_state_dict", "state_dict_ema"):
        if isinstance(sd, dict) and key in sd and isinstance(sd[key], dict):
            sd = sd[key]
            break
    if not isinstance(sd, dict) or not sd or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise EdgeError(f"weights file {path} does not hold a state dict of tensors")
    return {k.removeprefix("module.").removeprefix("_orig_mod."): v for k, v in sd.items()}


def _classifier_key(timm: Any, name: str) -> str:
    cfg = timm.models.get_pretrained_cfg(name) or None
    clf = getattr(cfg, "classifier", None) or "classifier"
    return clf if isinstance(clf, str) else clf[0]


def _create(timm: Any, name: str, **kw: Any) -> Any:
    """timm's factory, with its layers in their export form (``exportable``): attention as
    matmul + softmax instead of the fused scaled_dot_product_attention, whose export decomposes into
    masking ops (any, eq, where) that XNNPACK does not take; the weights are the same."""
    try:
        return timm.create_model(name, exportable=True, **kw)
    except RuntimeError as exc:
        if "Unknown model" in str(exc) or "Invalid pretrained tag" in str(exc):
            raise EdgeError(f"unknown timm model {name!r} (see `timm.list_models()`)") from exc
        raise


def builds_for_size(model: Any) -> bool:
    """Whether the model's class takes ``img_size``: its layers (attention biases, position
    embeddings, reshapes) are built for one input size, so another size must be asked for at
    creation (LeViT, EfficientFormerV2, MobileViT), while a plain CNN takes any size as built."""
    import inspect

    return any("img_size" in inspect.signature(vars(c)["__init__"]).parameters
               for c in type(model).__mro__ if "__init__" in vars(c))


def _sized(timm: Any, name: str, full: Any, size: int | None, seed: int | None) -> Any:
    """``full`` rebuilt for a ``size`` px input when its architecture depends on the input size,
    else ``full`` itself. ``seed``: random weights, created anew with it; None: ``full``'s weights,
    which must fit the rebuilt model."""
    import torch

    default = tuple(full.pretrained_cfg.get("input_size", (3, size, size)))[1:]
    if size is None or default == (size, size) or not builds_for_size(full):
        return full
    if seed is not None:
        torch.manual_seed(seed)
    sized = _create(timm, name, pretrained=False, img_size=size, num_classes=full.num_classes)
    if seed is None:
        try:
            sized.load_state_dict(full.state_dict(), strict=True)
        except RuntimeError as exc:  # size-dependent tables (attention biases) have other shapes
            raise EdgeError(f"{name} is built for one input size and its weights do not fit "
                            f"--input-size {size}: {first_line(exc)[:200]}") from exc
    return sized


def cached_hub_file(timm: Any, name: str) -> Path | None:
    """The model's weights file in the local Hugging Face cache, found without any network access."""
    cfg = timm.models.get_pretrained_cfg(name)
    repo = getattr(cfg, "hf_hub_id", None)
    if not repo:
        return None
    from huggingface_hub import try_to_load_from_cache

    for fname in ("model.safetensors", "pytorch_model.bin", getattr(cfg, "hf_hub_filename", None)):
        if fname:
            hit = try_to_load_from_cache(repo, fname)
            if isinstance(hit, str):
                return Path(hit)
    return None


def hub_reachable(timeout: float = 2.0) -> bool:
    """Whether the Hugging Face hub (or the HTTPS proxy in front of it) accepts a connection.

    Why: offline, the hub client retries for about a minute before it gives up; HF_HUB_OFFLINE or a
    failed short connect says the same at once."""
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on"):
        return False
    proxy = os.environ.get("HTTPS_PROXY") or os.environ.get("https_proxy")
    url = urlsplit(proxy or os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    if not url.hostname:
        return True  # a form we cannot probe: let the client try
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        socket.create_connection((url.hostname, port), timeout=timeout).close()
    except OSError:
        return False
    return True


def hub_unreachable(name: str) -> EdgeError:
    return EdgeError(f"hub weights for {name} are not in the local cache and the hub is unreachable; "
                     "give a weights file (--weights FILE) or --weights random")


def _load_hub(timm: Any, name: str, num_classes: int | None, offline: bool) -> Any:
    """Pretrained weights: from the local cache when there (no network), else, unless ``offline``
    or the hub is unreachable, through timm's own hub download."""
    kw: dict[str, Any] = {"num_classes": num_classes} if num_classes is not None else {}
    cached = cached_hub_file(timm, name)
    if cached is not None:
        kw["pretrained_cfg_overlay"] = {"file": str(cached)}
    elif offline:
        raise EdgeError(f"no pretrained weights for {name} in the local hub cache")
    elif not hub_reachable():
        raise hub_unreachable(name)
    try:
        return _create(timm, name, pretrained=True, **kw)
    except (OSError, ValueError, RuntimeError) as exc:
        msg = first_line(exc)
        raise EdgeError(f"could not load pretrained weights for {name} from the hub or its cache: {msg}") from exc


def _imagenet_labels(timm: Any, n: int) -> list[str] | None:
    if n != 1000:
        return None
    info = timm.data.ImageNetInfo()
    return [info.index_to_description(i) for i in range(n)]


def _imagenet_synsets(timm: Any, n: int | None) -> list[str] | None:
    return list(timm.data.ImageNetInfo().label_names()) if n == 1000 else None


def _key_form(key: str) -> str:
    return key.replace("_", "").replace(".", "")


def _feature_weights(wanted: Mapping[str, Any], full: Mapping[str, Any], name: str) -> dict[str, Any]:
    """The full model's weights under the names of its ``features_only`` wrapper.

    Why not by name: timm's wrappers rename the modules they flatten (``stem.0`` becomes
    ``stem_0``) or nest the model (``model.``), so a key matches its source once dots and
    underscores are dropped, which a test checks is one-to-one on several families."""
    by_form: dict[str, str] = {}
    for key in full:
        by_form.setdefault(_key_form(key), key)
    nested = all(k.startswith("model.") for k in wanted)
    out: dict[str, Any] = {}
    for key in wanted:
        src = by_form.get(_key_form(key.removeprefix("model.") if nested else key))
        if src is None:
            raise EdgeError(f"{name}: the features_only model's weight {key} has no counterpart in the full model")
        out[key] = full[src]
    return out


def reparameterize(module: Any) -> Any | None:
    """The module with its training-time branches fused for inference (MobileOne, RepViT, FastViT:
    timm's own ``reparameterize_model``), or None when it has none to fuse."""
    if not any(hasattr(m, "reparameterize") or hasattr(m, "fuse") for m in module.modules()):
        return None
    from timm.utils.model import reparameterize_model

    return reparameterize_model(module)


def load_model(spec: ModelSpec, labels: list[str] | None = None, train: bool = False) -> LoadedModel:
    """Build the model for ``spec``; weights from the hub, a local file, or seeded random init.
    ``train``: keep the training-time form (a re-parameterizable model's branches unfused)."""
    torch = require("torch", "loading a model")
    timm = require("timm", "loading a model")
    arch = spec.name.split(".")[0]
    if not timm.is_model(arch):
        raise EdgeError(f"unknown timm model {spec.name!r}{did_you_mean(arch, timm.list_models())} "
                        "(see `timm.list_models()`)")
    notes: list[str] = []
    torch.manual_seed(spec.seed)

    src = spec.weights
    if src in ("hub", "auto"):
        try:
            full = _load_hub(timm, spec.name, spec.num_classes, offline=(src == "auto"))
            source = f"hub:{spec.name}"
        except EdgeError as exc:
            if src == "hub":
                raise
            notes.append(f"pretrained weights not in the local cache ({exc}); using seeded random weights")
            full = _create(timm, spec.name, pretrained=False, num_classes=spec.num_classes or 1000)
            source = f"random:seed={spec.seed}"
        sha = state_dict_digest(full.state_dict())
    elif src == "random":
        kw = {"num_classes": spec.num_classes} if spec.num_classes is not None else {}
        full = _create(timm, spec.name, pretrained=False, **kw)
        source, sha = f"random:seed={spec.seed}", state_dict_digest(full.state_dict())
    else:
        path = Path(src).expanduser()
        sd = read_state_dict(path)
        clf_key = _classifier_key(timm, spec.name)
        file_classes = sd[f"{clf_key}.weight"].shape[0] if f"{clf_key}.weight" in sd else None
        n = spec.num_classes if spec.num_classes is not None else file_classes
        if spec.num_classes is not None and file_classes is not None and spec.num_classes != file_classes:
            raise EdgeError(
                f"--num-classes {spec.num_classes} does not match the weights file, whose head has "
                f"{file_classes} classes"
            )
        full = _create(timm, spec.name, pretrained=False, num_classes=n if n is not None else 1000)
        try:
            full.load_state_dict(sd, strict=True)
        except RuntimeError as exc:
            lines = str(exc).strip().splitlines()
            raise EdgeError(f"weights file {path} does not fit {spec.name}: {' '.join(lines[:2])[:300]}") from exc
        source, sha = f"file:{path}", sha256_path(path)

    sized = _sized(timm, spec.name, full, spec.input_size, spec.seed if source.startswith("random:") else None)
    if sized is not full:
        notes.append(f"{spec.name} built for {spec.input_size} px input (its layers depend on the input size)")
        full = sized
        sha = state_dict_digest(full.state_dict()) if source.startswith("random:") else sha
    num_classes: int | None = int(full.num_classes)
    if spec.mode == "classifier":
        module, outputs = full, ["logits"]
    elif spec.mode == "embeddings":
        full.reset_classifier(0)
        module, outputs, num_classes = full, ["embeddings"], None
    else:
        size_kw = {"img_size": spec.input_size} if spec.input_size and builds_for_size(full) else {}
        module = _create(timm, spec.name, pretrained=False, features_only=True, **size_kw)
        module.load_state_dict(_feature_weights(module.state_dict(), full.state_dict(), spec.name), strict=True)
        outputs = [f"features_s{r}" for r in module.feature_info.reduction()]
        num_classes = None
    module.eval()
    fused = None if train else reparameterize(module)
    if fused is not None:
        before, after = (sum(p.numel() for p in m.parameters()) for m in (module, fused))
        module = fused.eval()
        notes.append(f"re-parameterized for inference (timm reparameterize_model): {before:,} -> {after:,} parameters")

    overlay = {"input_size": (3, spec.input_size, spec.input_size)} if spec.input_size else {}
    data_config = timm.data.resolve_model_data_config(full, args=overlay)
    if num_classes is not None and labels is None:
        labels = _imagenet_labels(timm, num_classes)
    if labels is not None and num_classes is not None and len(labels) != num_classes:
        notes.append(f"{len(labels)} labels given for {num_classes} classes; labels dropped")
        labels = None
    return LoadedModel(spec, module, dict(data_config), outputs, source, sha, num_classes, labels, notes,
                       _imagenet_synsets(timm, num_classes))


def recalibrate_batchnorm(model: LoadedModel, images: Any, batch_size: int = 16) -> None:
    """Re-estimate BatchNorm running statistics on real images.

    Why: a randomly initialised net has mean-0/var-1 running stats that do not match its real
    activations, so its activation ranges look nothing like a trained net's and int8 calibration
    on it says little. A cumulative average over the calibration images fixes that.
    """
    import torch

    bns = [m for m in model.module.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    saved = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None
    model.module.train()
    with torch.no_grad():
        for i in range(0, len(images), batch_size):
            model.module(images[i : i + batch_size])
    for m, mom in zip(bns, saved, strict=True):
        m.momentum = mom
    model.module.eval()
