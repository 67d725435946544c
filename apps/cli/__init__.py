"""`scopewatch`: the command line, one module per command family (`monitoring`: analyze, watch;
`serving`: dashboard, demo; `training`: synth, train, evaluate, calibrate, contact-sheet;
`checking`: check-real, a checkpoint on real footage through the monitor; `deploying`:
export-onnx). Each command parses and checks its arguments, then calls the package that does the
work. A user mistake ends with one line on stderr and exit status 2, never a traceback; so does
an output that can no longer be written (exit status 1)."""
from __future__ import annotations

import argparse
import os
import sys

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

from apps.cli import checking, deploying, logs, monitoring, referencing, serving, training  # noqa: E402  (after the analytics switch)
from apps.cli.common import Parser, UsageError  # noqa: E402
from monitor.outputs.export import OutputError  # noqa: E402


class PrintVersion(argparse.Action):
    """--version: the line unwrapped (argparse's own action wraps it to the terminal's width)."""

    def __init__(self, option_strings, dest, **kw):
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kw)

    def __call__(self, parser, namespace, values, option_string=None):
        from apps.version import version_line
        print(version_line())
        parser.exit()


def build_parser() -> Parser:
    parser = Parser(prog="scopewatch", description="Real-time distortion and quality monitor for surgical video.")
    parser.add_argument("--version", action=PrintVersion, help="print the version line and exit")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    parser.add_argument("--log-format", choices=("text", "json"), default="text",
                        help="json: one JSON object a line (time, level, message, feed, state, alarm), every "
                             "state change and alarm on/off, for log shippers")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser, metavar="COMMAND")
    for family in (training, checking, referencing, monitoring, serving, deploying):
        family.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "tasks", False) is None and args.command == "synth":
        from model.tasks import DEFAULT_TASKS
        args.tasks = DEFAULT_TASKS
    logs.configure(args.verbose, args.log_format)
    try:
        return args.run(args)
    except UsageError as e:
        print(f"scopewatch {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"scopewatch {args.command}: interrupted", file=sys.stderr)
        return 130
    except OutputError as e:  # the disk full or the output folder removed mid-run (archive mode's last step)
        print(f"scopewatch {args.command}: error: {e}", file=sys.stderr)
        return 1
