"""The long fuzz run of edgekit.lite.validate (CI runs 1,200 cases in tests/test_validate.py).

Mutates real models (byte flips, truncations, field mutations through the schema's
object API), runs every case through the structural checks and, when accepted, loads
it and runs one inference on zeros in child processes. Every case must end as
"accepted and runs" ("ok"), "rejected" by a named check, or refused by the interpreter
with an error ("error"); "crash" and "timeout" are failures and are listed.

    python benchmarks/fuzz_validate.py --cases=20000 --seed=1 [--json=fuzz.json]
"""

from __future__ import annotations

import json
import pathlib
import sys
import time
from collections.abc import Sequence

from absl import app, flags

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "tests"))

_CASES = flags.DEFINE_integer("cases", 20_000, "Number of mutated models.", lower_bound=1)
_SEED = flags.DEFINE_integer("seed", 1, "Random seed of the mutations.")
_JSON = flags.DEFINE_string("json", None, "Write the counts and failures to this JSON file.")


def main(argv: Sequence[str]) -> int:
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
    import _lite_fixtures as fx

    models = {
        "small_cnn_float": fx.small_cnn_float(),
        "small_cnn_int8": fx.small_cnn_int8(),
        "small_cnn_float16": fx.small_cnn_float16(),
        "detection_like": fx.detection_like(),
        "sparse_dense": fx.sparse_dense(),
        "while_model": fx.while_model(),
    }
    start = time.perf_counter()
    result = fx.fuzz(models, cases=_CASES.value, seed=_SEED.value)
    result["seconds"] = round(time.perf_counter() - start, 1)
    result["models"] = sorted(models)
    print(
        f"{result['cases']} cases in {result['seconds']} s (seed {_SEED.value}), "
        f"{len(models)} models"
    )
    for outcome, n in result["outcomes"].items():
        print(f"  {outcome:32s} {n}")
    for failure in result["failures"]:
        print("FAILURE", failure)
    if _JSON.value:
        pathlib.Path(_JSON.value).write_text(json.dumps(result, indent=2) + "\n")
    return 1 if result["failures"] else 0


if __name__ == "__main__":
    app.run(main)
