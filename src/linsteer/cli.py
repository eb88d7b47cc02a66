"""The ``linsteer`` command: a thin layer over the library. Errors: one line, exit code 2."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from linsteer import __version__
from linsteer.activations import Position
from linsteer.errors import LinsteerError
from linsteer.models import BUILTINS, DEFAULT_MODEL

Handler = Callable[[argparse.Namespace], int]


def _model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default=DEFAULT_MODEL,
                   help=f"built-in name ({', '.join(BUILTINS)}), hub id, model folder or .gguf file "
                        f"(default: {DEFAULT_MODEL})")
    p.add_argument("--dtype", default="auto", help="auto (bf16 where fast, else fp32), bf16, fp16, fp32")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    p.add_argument("--trust-remote-code", action="store_true",
                   help="allow model code from the hub (off by default)")


def _parse_layers(text: str | None) -> list[int] | None:
    if text is None or text == "all":
        return None
    try:
        out: list[int] = []
        for part in text.split(","):
            if "-" in part.strip()[1:]:
                lo, hi = part.split("-", 1)
                out.extend(range(int(lo), int(hi) + 1))
            else:
                out.append(int(part))
        return out
    except ValueError as exc:
        raise LinsteerError(f"bad --layers {text!r}; use e.g. 'all', '3,6,9' or '4-10'") from exc


def _parse_position(text: str) -> Position:
    if text == "last":
        return "last"
    if text == "mean":
        return "mean"
    try:
        return int(text)
    except ValueError as exc:
        raise LinsteerError(f"bad --position {text!r}; use last, mean or an integer index") from exc


def cmd_extract(args: argparse.Namespace) -> int:
    from linsteer.extract import ExtractSettings, run_extract

    settings = ExtractSettings(
        model=args.model,
        contrast=args.contrast,
        n_per_class=args.n,
        seed=args.seed,
        method=args.method,
        position=_parse_position(args.position),
        prompt_format=args.format,
        layers=_parse_layers(args.layers),
        batch_size=args.batch_size,
        dtype=args.dtype,
        device=args.device,
        trust_remote_code=args.trust_remote_code,
    )
    result = run_extract(settings, out=Path(args.out), progress=not args.quiet)
    print(result.summary())
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="linsteer",
        description="Find, validate and apply linear reasoning directions in language models.",
    )
    parser.add_argument("--version", action="version", version=f"linsteer {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    ext = sub.add_parser("extract", help="read activations on a contrast set and write a vector file",
                         description="Read the residual stream on reasoning vs memorization prompts "
                                     "and write one direction per layer (safetensors).")
    _model_args(ext)
    from linsteer.prompts.spec import CONTRAST_HELP

    ext.add_argument("--contrast", default="builtin", help=f"contrast set: {CONTRAST_HELP}")
    ext.add_argument("--n", type=int, default=64, help="prompts per class (default 64)")
    ext.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")
    ext.add_argument("--method", default="mean_diff", choices=["mean_diff", "pca", "probe"],
                     help="extraction method (default mean_diff, Hong et al.'s LiReF)")
    ext.add_argument("--position", default="last",
                     help="token to read: last (default), mean, or an integer index")
    ext.add_argument("--format", default="zero_shot", help="prompt format (default zero_shot: 'Q: ..\\nA:')")
    ext.add_argument("--layers", default="all", help="layers to read: all (default), '3,6,9' or '4-10'")
    ext.add_argument("--batch-size", type=int, default=16, help="prompts per forward (default 16)")
    ext.add_argument("--out", default="vector.safetensors", help="output vector file")
    ext.add_argument("--quiet", action="store_true", help="no progress bars")
    ext.set_defaults(handler=cmd_extract)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Handler = args.handler
    try:
        return handler(args)
    except LinsteerError as exc:
        message = " ".join(str(exc).split())
        print(f"linsteer: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("linsteer: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
