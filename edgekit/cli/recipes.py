"""edgekit-recipes: list the built-in recipes, one line each (or print one as JSON).

edgekit-recipes
edgekit-recipes --show=prune50_int8 > my_recipe.json
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from absl import flags

from edgekit import recipes
from edgekit.cli import _common

_SHOW = flags.DEFINE_string("show", None, "Print this recipe (name or path) as JSON, every field.")


def main(argv: Sequence[str]) -> None:
    del argv
    if _SHOW.value:
        print(json.dumps(recipes.resolve_recipe(_SHOW.value).to_dict(), indent=2))
        return
    names = recipes.builtin_names()
    width = max(len(n) for n in names)
    for name in names:
        print(f"{name.ljust(width)}  {recipes.describe(name)}")


def run() -> None:
    _common.run(main)


if __name__ == "__main__":
    run()
