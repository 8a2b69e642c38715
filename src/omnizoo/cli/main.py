"""The ``omnizoo`` command line: a thin shell over the public API.

Each command group lives in its own module of this package and exposes
``register(subparsers) -> None``; the parser it adds sets ``func(args) -> int``.

    omnizoo list 'resnet*' --source timm --pretrained
    omnizoo list --pretrained --sort top1 --columns name,top1,params,gflops,size
    omnizoo compare resnet50 timm:resnet50.a1_in1k
    omnizoo plot -o zoo.png
    omnizoo info resnet50
    omnizoo download torchvision:resnet50.IMAGENET1K_V2
    omnizoo lock timm:resnet18.a1_in1k -o omnizoo.lock
    omnizoo predict resnet50 cat.jpg --topk 5 --json
    omnizoo export resnet50 resnet50.onnx
    omnizoo cache list | verify | remove | prune | info

``--import MODULE`` (repeatable) imports a module (or runs a ``.py`` file) first, so that the
models it registers (``omnizoo.register_model``, timm's ``@register_model``) are known to the
command: ``omnizoo --import mymodels predict user:my_net cat.jpg``. ``python -m omnizoo`` is
the same command line.

Exit codes: 0 success; 1 a runtime error (one line on stderr, ``omnizoo: error: <message>``,
a traceback only with ``--debug``), including OSErrors such as a permission denied or a
read-only cache, and commands that report failures (``cache verify`` finding corruption,
``predict`` with unreadable images); 2 a usage error (argparse); 130 interrupted.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import traceback
from collections.abc import Sequence

# Command-group modules, in the order their commands appear in --help.
COMMAND_MODULES = (
    "models",
    "compare",
    "plot",
    "download",
    "lock",
    "cache",
    "predict",
    "export",
    "benchmark",
    "validate",
    "finetune",
)


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser (every command group registered)."""
    from .._version import __version__

    parser = argparse.ArgumentParser(
        prog="omnizoo",
        description="Pretrained image models from torchvision, timm, Cadene, EfficientNet and "
        "the ONNX zoo: one registry, verified weights, exact preprocessing.",
    )
    parser.add_argument("--version", action="version", version=f"omnizoo {__version__}")
    parser.add_argument("--debug", action="store_true", help="print the full traceback of an error")
    parser.add_argument(
        "--import",
        dest="imports",
        action="append",
        default=[],
        metavar="MODULE",
        help="import a module (or run a .py file) that registers models, before the command",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMAND_MODULES:
        module = importlib.import_module(f"{__package__}.{name}")
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``omnizoo`` console script; returns the exit code (see the module
    docstring): argparse exits 2 on a usage error; every error of a command is one line on
    stderr and exit code 1, with the traceback only under ``--debug``."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        for module in args.imports:
            import_module(module)
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `omnizoo list | head`
        return 0
    except Exception as exc:
        if args.debug:
            traceback.print_exc()
        print(f"omnizoo: error: {error_line(exc)}", file=sys.stderr)
        return 1


def import_module(target: str) -> None:
    """``--import``: a ``.py`` file is run as a module named after it; anything else is
    imported by its dotted name (the current directory is on the path, as for ``python -m``)."""
    import importlib.util
    import os
    from pathlib import Path

    from ..errors import ConfigurationError

    if target.endswith(".py"):
        path = Path(target).expanduser()
        spec = importlib.util.spec_from_file_location(path.stem, path)
        if spec is None or spec.loader is None or not path.is_file():
            raise ConfigurationError(f"--import {target}: no such Python file")
        module = importlib.util.module_from_spec(spec)
        sys.modules[path.stem] = module
        spec.loader.exec_module(module)
        return
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        importlib.import_module(target)
    except ModuleNotFoundError as exc:
        if exc.name and target.startswith(exc.name):
            raise ConfigurationError(f"--import {target}: no module named {exc.name!r}") from exc
        raise


def error_line(exc: BaseException) -> str:
    """One line for an error: omnizoo's own messages as they are, an OSError with its file
    and reason, anything else (a bug) with its type and a hint to rerun with --debug."""
    from ..errors import OmnizooError

    if isinstance(exc, OmnizooError):
        text = str(exc)
    elif isinstance(exc, OSError) and exc.strerror:
        where = f": {exc.filename}" if exc.filename is not None else ""
        text = f"{exc.strerror}{where}"
    elif isinstance(exc, OSError):
        text = str(exc) or type(exc).__name__
    else:
        text = f"unexpected {type(exc).__name__}: {exc} (rerun with --debug for the traceback)"
    return " ".join(text.split()) or type(exc).__name__


if __name__ == "__main__":
    sys.exit(main())
