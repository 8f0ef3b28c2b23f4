"""``python -m ecmlib <command>``: parity, evaluate, synth, train, eval, workbook, sweep,
record, report.

Each command is a thin wrapper: the work lives in the module named in its help, so a
notebook can call the same function.
"""

from __future__ import annotations

import argparse
import sys


def _parity(args: argparse.Namespace) -> int:
    from .parity import parity_main
    return parity_main(args.files, args.gt)


def _evaluate(args: argparse.Namespace) -> int:
    from .method.evaluation import run_evaluate
    print(run_evaluate(args.gt, args.pred, args.subset, args.tiou, args.json))
    return 0


def _synth(argv: list[str]) -> int:
    from .data.synthetic import synth_main
    return synth_main(argv)


def _train(args: argparse.Namespace) -> int:
    from .training.train import train_main
    return train_main(args)


def _eval(args: argparse.Namespace) -> int:
    from .training.train import eval_main
    return eval_main(args)


def _workbook(argv: list[str]) -> int:
    from .studies.workbook import workbook_main
    return workbook_main(argv)


def _record(argv: list[str]) -> int:
    from .studies.record import record_main
    return record_main(argv)


def _report(argv: list[str]) -> int:
    from .studies.report import report_main
    return report_main(argv)


def _sweep(argv: list[str]) -> int:
    from .studies.workbook import sweep_main
    return sweep_main(argv)


def _add_data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", default="THUMOS14",
                   choices=["THUMOS14", "ActivityNet1.2", "ActivityNet1.3"])
    src = p.add_mutually_exclusive_group()
    src.add_argument("--data-root", help="folder of real features (any supported layout)")
    src.add_argument("--synthetic", metavar="PRESET",
                     help="synthetic benchmark preset (default: thumos14-mini / anet1x-mini)")
    p.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE",
                   help="override any config value, e.g. --set feat_dim=128 train.lr=1e-4")
    p.add_argument("--device", help="auto | cpu | cuda | cuda:N (default: auto)")


def build_parser() -> argparse.ArgumentParser:
    """The argparse tree of every command that parses its own flags here."""
    parser = argparse.ArgumentParser(prog="python -m ecmlib", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("parity", help="recompute the golden numbers of the authors' code")
    p.add_argument("files", nargs="*", help="golden .npz files (default: tests/data/*)")
    p.add_argument("--gt", help="THUMOS14 ground truth for the mAP checks (default: data/thumos14/gt.json)")
    p.set_defaults(func=_parity)

    p = sub.add_parser("evaluate", help="score an ActivityNet-format result file")
    p.add_argument("--gt", required=True, help="ground-truth JSON (ActivityNet format)")
    p.add_argument("--pred", required=True, help="result JSON (ActivityNet format)")
    p.add_argument("--subset", default="test", help="ground-truth subset (default: test)")
    p.add_argument("--tiou", default="0.1:0.9:0.1", help="start:stop:step or a comma list")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=_evaluate)

    p = sub.add_parser("train", help="train ECM (the authors' train.py)")
    _add_data_args(p)
    p.add_argument("--epochs", type=int, help="number of epochs (default: the preset's)")
    p.add_argument("--out", help="run directory (default: runs/train-<dataset>-<time>)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing run directory")
    p.add_argument("--resume", metavar="RUN",
                   help="finish an interrupted run: RUN or RUN/last.pth continues in RUN "
                        "(with --out: into a copy, RUN untouched); give the run's own "
                        "options: another config is refused, except a larger --epochs "
                        "(and --device / train.num_threads, with a warning)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_train)

    p = sub.add_parser("eval", help="evaluate a checkpoint (the authors' eval.py)")
    _add_data_args(p)
    p.add_argument("--weight-file", required=True, help="checkpoint (official format)")
    p.add_argument("--out", help="folder for the result files (default: beside the checkpoint)")
    p.add_argument("--overwrite", action="store_true", help="replace existing result files")
    p.set_defaults(func=_eval)
    return parser


# Commands that parse their own argv (they own many options and are also called from code).
PASSTHROUGH = {"synth": _synth, "workbook": _workbook, "sweep": _sweep, "record": _record,
               "report": _report}


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m ecmlib`` and the ``ecmlib`` script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in PASSTHROUGH:
        return _clean_errors(lambda: PASSTHROUGH[argv[0]](argv[1:]))
    parser = build_parser()
    if not argv:
        parser.print_help()
        print("\nother commands: " + ", ".join(PASSTHROUGH) + " (use --help on each)")
        return 2
    args = parser.parse_args(argv)
    return _clean_errors(lambda: args.func(args))


def _clean_errors(command) -> int:
    """Run a command; a problem it reports (bad input, a full disk, a busy folder) is one
    line on stderr and exit code 2, not a traceback."""
    try:
        return int(command() or 0)
    except (ValueError, OSError, RuntimeError) as err:
        text = err.strerror if isinstance(err, OSError) and err.filename is None \
            and err.strerror else err
        print(f"error: {text}", file=sys.stderr)
        return 2
