"""What every command shares: user errors as one paragraph, exit codes, output."""

from __future__ import annotations

import json
import pathlib
import signal
import sys
import textwrap
from collections.abc import Callable, Sequence
from typing import Any

from absl import app, flags

from edgekit import errors, subproc
from edgekit.benchmark.harness import report

# One table layout for every command. It lives in the benchmark harness, which must
# print the same tables on a device without absl; kept here under its old name.
format_table = report.format_table

# Exit status for bad input (the user's to fix); 1 stays for failures such as a
# check that did not pass, and tracebacks mean a bug in edgekit.
EXIT_USER_ERROR = 2


def run(
    main: Callable[[Sequence[str]], Any], *, required: Sequence[str] = (), isolate: bool = False
) -> None:
    """Runs an absl `main`, turning `UserInputError` into a clean message and exit 2.

    Args:
      main: the command's `main(argv)`.
      required: names of the flags the command cannot run without. They are checked
        after parsing, before `main`, with `require`: one paragraph
        `error: --x is required. ...` and exit 2, whether the command runs as
        `python -m edgekit.cli.<verb>` or as the installed `edgekit-<verb>`. Flags that
        are required only sometimes (--model unless --example) are checked in `main`
        with `require`, which says the same.
      isolate: run `main` in a child process (`edgekit.subproc`) that a crash inside
        TensorFlow cannot take down with this one: after the flags parse and the
        required flags are there (so --help and flag errors stay here and instant),
        the command re-executes itself; a child that crashes (SIGSEGV, SIGABRT...) is
        retried once with `TF_ENABLE_ONEDNN_OPTS=0`, which the output and the --json
        report (`crash_retry`) then say.
    """

    # Console scripts run a wrapper as __main__, so absl's --help would list no flags;
    # make the command module's flags the key flags it shows.
    main_name = sys.argv[0] if sys.argv else "__main__"
    for flag in flags.FLAGS.get_flags_for_module(main.__module__):
        flags.FLAGS.register_key_flag_for_module(main_name, flag)

    def guarded(argv: Sequence[str]) -> Any:
        if len(argv) > 1:
            raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
        try:
            require(*required)
            if isolate and not subproc.in_child():
                sys.exit(_run_isolated(main, argv))
            if isolate:
                subproc.quiet_fault_dump()
                subproc.test_crash_point("command")
            return main(argv)
        except errors.UserInputError as e:
            print_error(str(e))
            sys.exit(EXIT_USER_ERROR)
        except KeyboardInterrupt:
            if not isolate:
                raise
            print("error: interrupted.", file=sys.stderr)
            sys.exit(128 + signal.SIGINT)

    app.run(guarded)


def _run_isolated(main: Callable[[Sequence[str]], Any], argv: Sequence[str]) -> int:
    """The parent of an isolated command: runs it in a child, says how a crash ended.

    The child is forked, so it keeps what this process holds: the parsed flags, and
    Keras classes a user's script registered before calling the command's `run()`.
    """
    module = subproc.command_module(main.__module__) or ""
    what = (
        "edgekit-" + module.rsplit(".", 1)[-1]
        if module.startswith("edgekit.cli.")
        else pathlib.Path(sys.argv[0]).name
    )

    def child() -> int:
        subproc.quiet_fault_dump()
        subproc.test_crash_point("command")
        try:
            main(argv)
        except errors.UserInputError as e:
            print_error(str(e))
            return EXIT_USER_ERROR
        except KeyboardInterrupt:
            print("error: interrupted.", file=sys.stderr)
            return 128 + signal.SIGINT
        return 0

    outcome = subproc.run_isolated(child, what=what)
    if outcome.returncode == 0 and outcome.crash_retry:
        json_flag = flags.FLAGS["json"].value if "json" in flags.FLAGS else None
        if json_flag:
            subproc.add_to_json(json_flag, "crash_retry", outcome.crash_retry)
        print(f"\nNote: {subproc.crash_note(outcome.crash_retry)}", flush=True)
    return outcome.returncode


def require(*names: str, hint: str = "") -> None:
    """Raises the one "--x is required" `UserInputError` if any named flag has no value.

    A flag has no value when it is unset (None), empty ("") or an empty list.

    Args:
      *names: flag names, without the dashes.
      hint: what may replace the flags, such as " (or pass --example)"; it follows
        "is required".

    Raises:
      errors.UserInputError: naming every missing flag (exit 2 under `run`).
    """
    missing = [n for n in names if flags.FLAGS[n].value in (None, "", [])]
    if missing:
        raise missing_flags(*missing, hint=hint)


def missing_flags(*names: str, hint: str = "") -> errors.UserInputError:
    """The error every command gives for required flags that were not passed."""
    listed = [f"--{n}" for n in names]
    text = listed[0] if len(listed) == 1 else ", ".join(listed[:-1]) + " and " + listed[-1]
    verb = "is" if len(listed) == 1 else "are"
    return errors.UserInputError(
        f"{text} {verb} required{hint}. Run with --helpfull for every flag. "
        + errors.received(**{n: flags.FLAGS[n].value for n in names})
    )


def print_error(message: str) -> None:
    """Prints a user error as one wrapped paragraph on stderr."""
    text = textwrap.fill(message, width=100, break_long_words=False, break_on_hyphens=False)
    print(f"error: {text}", file=sys.stderr)


def print_table(rows: Sequence[Sequence[Any]], headers: Sequence[str]) -> None:
    """Prints a plain aligned table on stdout."""
    print(format_table(rows, headers))


def dump_json(obj: Any) -> str:
    return json.dumps(obj, indent=2)
