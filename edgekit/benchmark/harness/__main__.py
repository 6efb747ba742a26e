"""`python <harness folder> SPEC.json RESULT.json`: the measuring process (see `child`).

The parent runs the folder rather than `python -m edgekit.benchmark.harness`, so the
measuring process imports nothing of edgekit outside this folder (its memory figures
stay the model's own), and a device needs nothing but this folder.
"""

import importlib
import importlib.util
import os
import sys

if __package__:  # python -m edgekit.benchmark.harness ...
    from .child import main
else:  # python path/to/harness ...: load the folder as a package under a fixed name
    _folder = os.path.dirname(os.path.abspath(__file__))
    if sys.path and os.path.abspath(sys.path[0]) == _folder:
        del sys.path[0]  # the folder's module names must not shadow top-level ones
    _spec = importlib.util.spec_from_file_location(
        "edgekit_bench_harness",
        os.path.join(_folder, "__init__.py"),
        submodule_search_locations=[_folder],
    )
    _package = importlib.util.module_from_spec(_spec)
    sys.modules[_spec.name] = _package
    _spec.loader.exec_module(_package)
    main = importlib.import_module(_spec.name + ".child").main

sys.exit(main(sys.argv))
