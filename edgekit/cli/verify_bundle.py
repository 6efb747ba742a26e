"""edgekit-verify-bundle: check a bundle before it ships.

    edgekit-verify-bundle DIR          (or --bundle_dir=DIR)

Checks every checksum and the manifest's own, validates the model, loads it in a
child process and runs one inference on zeros. Exit status: 0 all checks passed,
1 a check failed, 2 bad input (no such folder).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from absl import app, flags

from edgekit import errors
from edgekit.cli import _common

_BUNDLE_DIR = flags.DEFINE_string("bundle_dir", None, "The bundle folder (or pass it as DIR).")
_TIMEOUT = flags.DEFINE_float(
    "timeout", 60.0, "Seconds the child process may take to load and run.", lower_bound=1
)

EXIT_CHECK_FAILED = 1


def main(argv: Sequence[str]) -> int:
    from edgekit import bundle

    if len(argv) > 2:
        raise app.UsageError(f"Pass one bundle folder; got {' '.join(argv[1:])}")
    bundle_dir = argv[1] if len(argv) == 2 else _BUNDLE_DIR.value
    if not bundle_dir:
        raise _common.missing_flags(
            "bundle_dir", hint=" (or pass the folder: edgekit-verify-bundle DIR)"
        )
    result = bundle.verify(bundle_dir, timeout=_TIMEOUT.value)
    width = max(len(name) for name, _, _ in result.checks)
    for name, passed, detail in result.checks:
        print(f"{'ok' if passed else 'FAILED':6}  {name:{width}}  {detail}")
    if result.ok:
        print(f"{result.bundle_dir}: all {len(result.checks)} checks passed")
        return 0
    print(f"{result.bundle_dir}: {len(result.problems)} check(s) FAILED", file=sys.stderr)
    sys.exit(EXIT_CHECK_FAILED)


def run() -> None:
    # _common.run refuses positional arguments; this command takes the folder as one.
    def guarded(argv: Sequence[str]) -> int:
        try:
            return main(argv)
        except errors.UserInputError as e:
            _common.print_error(str(e))
            sys.exit(_common.EXIT_USER_ERROR)

    app.run(guarded)


if __name__ == "__main__":
    run()
