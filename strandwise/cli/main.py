"""The ``strandwise`` command. Each subcommand is a module in this package with ``register``/``run``.

Errors a user can cause (bad paths, bad configs, bad input data) are printed as one line on stderr
with exit code 2; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from strandwise._version import __version__

#: Subcommand modules under ``strandwise.cli``; each defines ``register(subparsers)``.
SUBCOMMANDS: list[str] = ["quickstart", "fit", "evaluate", "predict", "negatives", "pipeline",
                         "attribute", "seqlets", "motifs", "marginalize", "variants",
                         "pretrain", "finetune", "embed", "vep"]

#: Exceptions that come from what the user gave us; shown as one line, not a traceback.
USER_ERRORS = (ValueError, TypeError, KeyError, FileNotFoundError, NotADirectoryError, PermissionError,
               RuntimeError)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="strandwise",
        description="Deep learning on DNA: Cherimoya profile models and Caduceus DNA language models.",
    )
    parser.add_argument("--version", action="version", version=f"strandwise {__version__}")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMANDS:
        importlib.import_module(f"strandwise.cli.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        result = args.func(args)
    except KeyboardInterrupt:
        print("strandwise: interrupted", file=sys.stderr)
        return 130
    except USER_ERRORS as exc:
        if args.debug:
            raise
        msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"strandwise {args.command}: error: {msg}", file=sys.stderr)
        return 2
    return int(result or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
