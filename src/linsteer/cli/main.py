"""The ``linsteer`` command: a thin layer over the library. Errors: one line, exit code 2.

A command imports the stage modules it runs (pipeline, plotting, comparison) when it runs, so that
``--help`` and refused input answer without loading matplotlib and the pipeline; nothing here or in
those modules imports back into the CLI, so these late imports dodge no cycle.
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from transformers.utils import logging as hf_logging

from linsteer.checks import at_least, check_device, finite, parse_floats
from linsteer.cli.interop import add_ray_options, register
from linsteer.errors import LinsteerError
from linsteer.extract.read import parse_position
from linsteer.extract.vector import SteeringVector
from linsteer.io import write_failure
from linsteer.model.layers import parse_layers
from linsteer.model.load import BUILTINS, DEFAULT_MODEL
from linsteer.prompts.spec import CONTRAST_HELP
from linsteer.run.config import PRESETS, SEED_FAMILY, RunConfig, make_config, with_data
from linsteer.run.lock import run_lock
from linsteer.run.rundir import choose_run_dir, is_finished
from linsteer.run.validate import check_vector_for_model, validate_config
from linsteer.version import __version__

if TYPE_CHECKING:
    from linsteer.run.stages import Run

Handler = Callable[[argparse.Namespace], int]


def _model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default=DEFAULT_MODEL,
                   help=f"built-in name ({', '.join(BUILTINS)}), hub id, model folder or .gguf file "
                        f"(default: {DEFAULT_MODEL})")
    p.add_argument("--dtype", default="auto", help="auto (bf16 where fast, else fp32), bf16, fp16, fp32")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    p.add_argument("--trust-remote-code", action="store_true",
                   help="allow model code from the hub (off by default)")


def cmd_extract(args: argparse.Namespace) -> int:
    from linsteer.run.extract import run_extract

    parse_position(args.position)
    settings = RunConfig(model=args.model, contrast=args.contrast, n_per_class=args.n, seed=args.seed,
                         method=args.method, position=args.position, prompt_format=args.format,
                         batch_size=args.batch_size, dtype=args.dtype, device=args.device)
    result = run_extract(settings, out=Path(args.out), layers=parse_layers(args.layers),
                         trust_remote_code=args.trust_remote_code, progress=not args.quiet)
    print(result.summary())
    return 0


def _run_overrides(args: argparse.Namespace) -> dict[str, object]:
    layers = parse_layers(args.layers) if args.layers else None
    return {
        "model": args.model, "dtype": args.dtype, "device": args.device, "contrast": args.contrast,
        "n_per_class": args.n, "seed": args.seed, "method": args.method,
        "layers": tuple(layers) if layers else None,
        "strengths": parse_floats(args.strengths, "--strengths"),
        "operators": tuple(args.operators.split(",")) if args.operators else None,
        "unit": args.unit, "n_null": args.n_null, "n_dev": args.n_dev, "n_test": args.n_test,
        "shots": args.shots, "batch_size": args.batch_size, "damage_cap": args.damage_cap,
    }


def _say(quiet: bool) -> Callable[[str], None]:
    def say(message: str) -> None:
        if not quiet:
            print(message, file=sys.stderr, flush=True)

    return say


def cmd_run(args: argparse.Namespace) -> int:

    config = make_config(args.preset, args.config, _run_overrides(args))
    config = validate_config(with_data(config, args.preset))
    run_dir, resumed = choose_run_dir(config, args.run_dir, args.runs)
    with run_lock(run_dir):  # a second writer is refused before it says anything
        return _run(args, config, run_dir, resumed)


def _run(args: argparse.Namespace, config: RunConfig, run_dir: Path, resumed: bool) -> int:
    from linsteer.run.stages import run_all

    if not resumed:
        start = f"run directory {run_dir} (if interrupted, the same command resumes it)"
    elif is_finished(run_dir):
        start = f"{run_dir} is already finished with these settings; reusing its results"
    else:
        start = f"resuming {run_dir} (same settings, not finished)"
    print(f"linsteer: {start}", file=sys.stderr, flush=True)
    report = run_all(config, run_dir, _say(args.quiet), progress=not args.quiet)
    print(report)
    return 0


def cmd_audit(args: argparse.Namespace) -> int:
    from linsteer.run.audit import check_audit, finished_audit, run_audit

    overrides = _run_overrides(args) | {"max_new_tokens": args.max_new_tokens}
    config = check_audit(with_data(make_config(args.preset, args.config, overrides), args.preset,
                                    tasks=False))  # the audit reads MMLU-Pro only
    run_dir, resumed = choose_run_dir(config, args.run_dir, args.runs)
    done = finished_audit(run_dir, args.scoring)
    start = ("already finished; reusing it" if done else "resuming it" if resumed
             else "if interrupted, the same command resumes it")
    print(f"linsteer: audit run directory {run_dir} ({start})", file=sys.stderr, flush=True)
    out = run_dir / "audit.json" if done else run_audit(config, run_dir, _say(args.quiet),
                                                         not args.quiet, args.scoring)
    print((run_dir / "audit.md").read_text() if (run_dir / "audit.md").exists() else out)
    return 0


def cmd_stage(args: argparse.Namespace) -> int:
    """extract-into-run / sweep / analyze / report over an existing run directory."""
    from linsteer.run.stages import Run

    run_dir = Path(args.run_dir)
    config_file = run_dir / "config.yaml"
    if not config_file.is_file():
        raise LinsteerError(f"{run_dir} is not a run directory (no config.yaml); start one with linsteer run")
    config = validate_config(make_config("quick", config_file))
    with run_lock(run_dir):  # one writer per run directory
        return _stage(args, Run(run_dir, config, _say(args.quiet), progress=not args.quiet))


def _stage(args: argparse.Namespace, run: Run) -> int:
    from linsteer.run.stages import stage_report, stage_sweep

    run_dir, config, say = run.dir, run.config, run.say
    acts, vector = run.extracted()
    if args.stage == "analyze":
        from linsteer.report.content import analysis_figures
        from linsteer.report.figbase import save_figure

        figs, _ = analysis_figures(acts, vector, config.analysis_layers)
        for i, (title, _, fig) in enumerate(figs):
            save_figure(fig, run_dir / "figures" / f"analysis-{i}")
            say(f"figure: {title}")
        print(run_dir / "figures")
        return 0
    stage_sweep(run)
    if args.stage == "sweep":
        print(run_dir / "tables")
        return 0
    stage_report(run)
    print(run.report)
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from linsteer.run.compare import compare_models

    if args.preset == "seed" and not args.family and not args.models:
        args.family = SEED_FAMILY  # the post's trio (needs their weights)
    if args.family:
        from linsteer.run.family import family_compare

        print(family_compare(args.family, args.preset, args.config, Path(args.runs), _say(args.quiet),
                             overrides=_run_overrides(args) | {"model": None},
                             root=Path(args.resume) if args.resume else None))
        return 0
    models = [m for m in (args.models or "").split(",") if m]
    if not models and args.preset == "compare":
        models = list(BUILTINS)  # the offline built-ins
    if len(models) < 2:
        raise LinsteerError("--models needs at least two comma-separated models")
    out = compare_models(models, args.preset, args.config, Path(args.runs), _say(args.quiet),
                         overrides=_run_overrides(args) | {"model": None},
                         root=Path(args.resume) if args.resume else None)
    print(out)
    return 0


def cmd_generate(args: argparse.Namespace) -> int:
    from linsteer.generate.side_by_side import side_by_side

    finite([args.strength], "--strength")
    at_least(args.max_new_tokens, 1, "--max-new-tokens")
    check_device(args.device)
    if not Path(args.vector).is_file():
        raise LinsteerError(f"vector file not found: {args.vector}")
    # the vector against the model's config (layer range, width) before any weights load
    check_vector_for_model(SteeringVector.load(Path(args.vector)), args.model, args.layer,
                           args.trust_remote_code)
    print(side_by_side(args.prompt, vector=Path(args.vector), model=args.model, layer=args.layer,
                       strength=args.strength, operator=args.operator, unit=args.unit,
                       max_new_tokens=args.max_new_tokens, dtype=args.dtype, device=args.device,
                       trust_remote_code=args.trust_remote_code))
    return 0


def _sweep_options(p: argparse.ArgumentParser) -> None:

    p.add_argument("--preset", default="quick", choices=list(PRESETS),
                   help="quick: the default model on built-in data, <= 10 min on 2 CPU cores; "
                        "paper: Hong et al.'s settings (MMLU-Pro contrast, projection scaling), for GPUs; "
                        "cot: the default protocol on GSM8K 8-shot chain-of-thought (alternatives "
                        "included), for GPUs")
    p.add_argument("--config", default=None,
                   help="YAML file of config keys (see README); overrides the preset")
    p.add_argument("--runs", default="runs", help="folder for new run directories (default ./runs)")
    p.add_argument("--run-dir", default=None, help="use (or resume) this run directory instead of a new one")
    p.add_argument("--contrast", default=None, help=f"contrast set: {CONTRAST_HELP}")
    p.add_argument("--n", type=int, default=None, help="contrast prompts per class")
    p.add_argument("--seed", type=int, default=None, help="seed for sampling and controls")
    p.add_argument("--method", default=None, choices=["mean_diff", "pca", "probe"], help="extraction method")
    p.add_argument("--layers", default=None, help="steering layers, e.g. '6,9' or '4-10'")
    p.add_argument("--strengths", default=None, help="comma-separated strengths, e.g. '0.25,1'")
    p.add_argument("--operators", default=None, help="comma-separated: add, project_scale, ablate")
    p.add_argument("--unit", default=None, choices=["raw", "norm", "ppl", "kl"],
                   help="strength unit: raw; norm (add: multiples of the layer's typical residual "
                        "norm); ppl (strengths are perplexity budgets, e.g. 0.05,0.1,0.25: each "
                        "direction is calibrated to raise neutral-text perplexity by that much); "
                        "kl (the default: signed KL budgets on neutral text, nats per token, e.g. "
                        "-0.05,0.02,0.05)")
    p.add_argument("--damage-cap", type=float, default=None,
                   help="dev selection only among settings whose neutral-text KL is at most this "
                        "(nats per token; default 0.1)")
    p.add_argument("--n-null", type=int, default=None, help="null-direction controls (seeds)")
    p.add_argument("--n-dev", type=int, default=None, help="dev items per task (layer/strength selection)")
    p.add_argument("--n-test", type=int, default=None, help="test items per task (reported)")
    p.add_argument("--shots", type=int, default=None, help="few-shot examples per task item")
    p.add_argument("--batch-size", type=int, default=None, help="sequences per forward")
    p.add_argument("--quiet", action="store_true", help="no progress output")


class _Parser(argparse.ArgumentParser):
    """Usage errors as one line (``linsteer: error: ...``, exit 2), like every other error."""

    def error(self, message: str) -> NoReturn:
        raise LinsteerError(f"{message} (see {self.prog} --help)")


@contextmanager
def _quiet_transformers(quiet: bool) -> Iterator[None]:
    """Under --quiet, silence transformers' progress bars ("Loading weights") and warnings."""
    if not quiet:
        yield
        return

    bars, level = hf_logging.is_progress_bar_enabled(), hf_logging.get_verbosity()
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
        if bars:
            hf_logging.enable_progress_bar()


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="linsteer",
        description="Find, validate and apply linear reasoning directions in language models.",
    )
    parser.add_argument("--version", action="version", version=f"linsteer {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    ext = sub.add_parser("extract", help="read activations on a contrast set and write a vector file",
                         description="Read the residual stream on reasoning vs memorization prompts "
                                     "and write one direction per layer (safetensors).")
    _model_args(ext)

    ext.add_argument("--contrast", default=RunConfig.contrast,
                     help=f"contrast set: {CONTRAST_HELP} (default {RunConfig.contrast})")
    ext.add_argument("--n", type=int, default=RunConfig.n_per_class,
                     help=f"prompts per class (default {RunConfig.n_per_class})")
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

    run = sub.add_parser("run", help="the whole pipeline: extract, analyze, sweep with controls, report",
                         description="Contrast set -> activations -> directions -> PCA/separability/"
                                     "cosine -> layer x strength sweep with controls on a reasoning "
                                     "and a memorization task -> report.html, in a fresh run directory.")
    _model_args(run)
    run.set_defaults(model=None, dtype=None)
    _sweep_options(run)
    run.set_defaults(handler=cmd_run)

    aud = sub.add_parser("audit", help="the seed's experiment as published, then one flaw fixed at a time",
                         description="Replays the seed's protocol (its intervention on every block, "
                                     "its MMLU-Pro evaluation) on one model, then fixes one flaw at a "
                                     "time; writes audit.json and audit.md in the run directory.")
    _model_args(aud)
    aud.set_defaults(model=None, dtype=None)
    _sweep_options(aud)
    aud.set_defaults(preset="seed")
    aud.add_argument("--scoring", default="generate", choices=["mc", "generate"],
                     help="generate: greedy answers read with the seed's regex (the preset); "
                          "mc: score the letters after 'The answer is (' (fits a CPU)")
    aud.add_argument("--max-new-tokens", type=int, default=None, help="generated tokens per answer")
    aud.set_defaults(handler=cmd_audit)

    for name, text in (("analyze", "PCA, separability and cosine figures of a run's activations"),
                       ("sweep", "the steering sweep of a run (resumes where it stopped)"),
                       ("report", "the report of a run (runs any missing stage first)")):
        stage = sub.add_parser(name, help=text, description=text + ".")
        stage.add_argument("run_dir", help="a run directory made by linsteer run")
        stage.add_argument("--quiet", action="store_true", help="no progress output")
        stage.set_defaults(handler=cmd_stage, stage=name)
        if name == "sweep":
            add_ray_options(stage, cmd_stage)

    cmp_ = sub.add_parser("compare", help="run the pipeline on several models and compare them",
                          description="Each model gets its own run; then one table (baseline, best "
                                      "steered on test, best layer) and profiles on relative depth.")
    cmp_.add_argument("--models", default=None,
                      help="comma-separated models, e.g. gemma3-270m,smollm2-135m-instruct "
                           "(with --preset compare and no --models: the four offline built-ins)")
    cmp_.add_argument("--family", default=None,
                      help="base=A,instruct=B,reasoning=C: steered base vs unsteered siblings on the "
                           "same test items (paired tests) and the cost of the direction")
    cmp_.add_argument("--resume", default=None,
                      help="an earlier comparison directory: finished model runs are reused")
    cmp_.add_argument("--dtype", default=None, help="auto, bf16, fp16, fp32")
    cmp_.add_argument("--device", default=None, help="cpu or cuda")
    _sweep_options(cmp_)
    cmp_.set_defaults(handler=cmd_compare, model=None)

    gen = sub.add_parser("generate", help="side-by-side steered and unsteered generation for a prompt")
    _model_args(gen)
    gen.add_argument("prompt", help="the prompt text")
    gen.add_argument("--vector", required=True, help="vector file (from extract or a run directory)")
    gen.add_argument("--layer", type=int, required=True, help="layer to steer")
    gen.add_argument("--strength", type=float, default=1.0, help="strength (default 1.0)")
    gen.add_argument("--operator", default="add", choices=["add", "project_scale", "ablate"])
    gen.add_argument("--unit", default="norm", choices=["raw", "norm"])
    gen.add_argument("--max-new-tokens", type=int, default=48)
    gen.add_argument("--quiet", action="store_true", help="no progress output")
    gen.set_defaults(handler=cmd_generate)

    register(sub)  # export, import
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        handler: Handler = args.handler
        with _quiet_transformers(bool(getattr(args, "quiet", False))):
            return handler(args)
    except LinsteerError as exc:
        message = " ".join(str(exc).split())
        print(f"linsteer: error: {message}", file=sys.stderr)
        return 2
    except (OSError, sqlite3.OperationalError) as exc:  # a write the system refused, mid-work
        print(f"linsteer: error: {' '.join(write_failure(exc).split())}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("linsteer: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
