"""Argument groups several commands share (model, images, int8 knobs)."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

DEFAULT_OUT = Path("out")


class _AnyName(Mapping[str, Any]):
    """Subcommand choices that admit every name (iterating gives the real ones, for the help), so an
    unknown name reaches the command, which says "did you mean", instead of argparse's usage dump."""

    def __init__(self, names: dict[str, Any]) -> None:
        self._names = names

    def __getitem__(self, key: str) -> Any:
        return self._names[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)

    def __contains__(self, key: object) -> bool:
        return True


class NamedSubcommands(argparse._SubParsersAction):  # type: ignore[type-arg]
    """Subparsers whose unknown name runs ``unknown(name)`` (which raises edge's one-line error)."""

    def __init__(self, *args: Any, unknown: Callable[[str], Any], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.choices = _AnyName(self._name_parser_map)  # type: ignore[assignment]
        self.unknown = unknown

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        name = values[0]
        if name in self._name_parser_map:
            super().__call__(parser, namespace, values, option_string)
            return
        setattr(namespace, self.dest, name)
        namespace.func = lambda _args: self.unknown(name)


def csv_list(text: str) -> tuple[str, ...]:
    """argparse type for comma-separated lists (--targets, --precisions)."""
    return tuple(p.strip() for p in text.split(",") if p.strip())


def add_model_args(p: argparse.ArgumentParser) -> None:
    from edge.models import DEFAULT_MODEL, MODES

    g = p.add_argument_group("model")
    g.add_argument("--model", default=DEFAULT_MODEL, help="timm model name (default: %(default)s)")
    g.add_argument("--weights", default="hub",
                   help="hub (timm pretrained, may download), auto (hub cache else seeded random), "
                        "random (seeded), or a .safetensors/.pth state-dict file (default: %(default)s)")
    g.add_argument("--num-classes", type=int, default=None,
                   help="classifier size; inferred from a weights file when not given")
    g.add_argument("--mode", choices=MODES, default="classifier",
                   help="classifier logits, embeddings (num_classes=0) or features (features_only)")
    g.add_argument("--input-size", type=int, default=None, help="square input side (default: timm's)")
    g.add_argument("--seed", type=int, default=0, help="seed for random weights and image sampling")
    g.add_argument("--recalibrate-bn", action="store_true",
                   help="re-estimate BatchNorm statistics on the calibration images (for random weights)")


def add_data_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("images")
    g.add_argument("--calib",
                   help="calibration images: ImageFolder, flat ImageNet folder, or .tar.gz[::SUBDIR]")
    g.add_argument("--calib-size", type=int, default=128, help="calibration images to use (default: %(default)s)")
    g.add_argument("--eval", dest="eval_data", help="held-out images for the parity check (default: rest of --calib)")
    g.add_argument("--eval-size", type=int, default=32,
                   help="held-out images for the parity check (default: %(default)s)")
    g.add_argument("--classes", type=Path, help="class list for flat ImageNet folders (synset per line)")


def add_quant_args(p: argparse.ArgumentParser) -> None:
    from quantize import OBSERVERS

    g = p.add_argument_group("int8")
    g.add_argument("--observer", choices=OBSERVERS, default=None,
                   help="activation observer (default: the target's; percentile for every target)")
    g.add_argument("--percentile", type=float, default=99.99, help="for --observer percentile (and search)")
    g.add_argument("--search-images", type=int, default=64,
                   help="for --observer search: the calibration images each range is judged on")
    g.add_argument("--activations", choices=("static", "dynamic"), default="static",
                   help="static: int8 activation ranges fixed at calibration (default); dynamic: each conv/linear "
                        "input quantized at run time with the image's own range, the rest float (ExecuTorch, TFLite)")
    g.add_argument("--float-depthwise", action="store_true",
                   help="leave depthwise convolutions float (static int8 elsewhere): faster on x86, where "
                        "XNNPACK's int8 depthwise kernels are slower than its float ones")
    g.add_argument("--int8-head", action="store_true",
                   help="quantize the classifier head too (smaller file; by default it stays float: see README)")
    g.add_argument("--keep-float", action="append", default=[], metavar="PATTERN",
                   help="module paths (fnmatch, e.g. 'classifier' or 'blocks.5.*') to leave in float")
    add_auto_args(g)


def add_auto_args(g: Any) -> None:
    g.add_argument("--target-agreement", type=float, default=None, metavar="A",
                   help="accuracy-controlled int8 (classifiers, PT2E targets): keep the fewest, cheapest layers "
                        "float so that top-1 agrees with float on at least A (e.g. 0.99) of the search images, "
                        "then re-check on the held-out images")
    g.add_argument("--auto-search-images", type=int, default=128, metavar="N",
                   help="calibration images the --target-agreement choice is judged on (default: %(default)s)")


def model_spec(args: argparse.Namespace) -> Any:
    from edge.models import ModelSpec

    return ModelSpec(name=args.model, weights=args.weights, mode=args.mode, num_classes=args.num_classes,
                     seed=args.seed, input_size=args.input_size)
