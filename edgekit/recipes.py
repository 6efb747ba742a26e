"""Named recipes, and `resolve_recipe(name_or_path)`.

A recipe is one JSON file with an optional section per stage (see
`edgekit.config.Recipe` and docs/recipes.md). The built-in ones ship in
`edgekit/recipes/*.json`; their names say what they do, technique first, then the
conversion: `ptq_<mode>` converts only (post-training quantization);
`prune<percent>_<mode>`, `prune_2x4_<mode>`, `cluster<k>_<mode>` and `qat_<mode>`
fine-tune with that technique first; techniques chain left to right
(`prune80_qat_int8` prunes to 80%, then trains int8-aware keeping the zeros).

Example:
    >>> recipe = resolve_recipe("prune50_int8")
    >>> recipe = resolve_recipe("my_recipe.json")
"""

from __future__ import annotations

import json
import os
import pathlib
from typing import Any

from edgekit import errors
from edgekit.config import Recipe

_FOLDER = pathlib.Path(__file__).with_name("recipes")


def builtin_names() -> list[str]:
    """Names of the built-in recipes, sorted."""
    return sorted(p.stem for p in _FOLDER.glob("*.json"))


def _read(path: pathlib.Path) -> dict[str, Any]:
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise errors.UserInputError(
            f"The recipe {str(path)!r} is not valid JSON (line {e.lineno}, column {e.colno}: "
            f"{e.msg}). " + errors.received(recipe=str(path))
        ) from None
    if not isinstance(raw, dict):
        raise errors.UserInputError(
            "A recipe file must hold a JSON object with one section per stage. "
            + errors.received(recipe=str(path), type=type(raw).__name__)
        )
    return raw


def resolve_recipe(recipe: Any) -> Recipe:
    """Returns a `Recipe` from a built-in name, a JSON path, a dict or a `Recipe`.

    Raises:
      UserInputError: an unknown name (the known ones are listed), a missing or
        invalid file, an unknown field, or an impossible combination of stages.
    """
    if isinstance(recipe, Recipe):
        return recipe
    if isinstance(recipe, dict):
        return Recipe.from_dict(recipe)
    if isinstance(recipe, (str, os.PathLike)):
        text = str(recipe)
        if text in builtin_names():
            return Recipe.from_dict(_read(_FOLDER / f"{text}.json"))
        path = pathlib.Path(text)
        if path.suffix == ".json" or path.exists():
            if not path.is_file():
                raise errors.UserInputError(
                    f"No recipe file at {text!r}. " + errors.received(recipe=text)
                )
            return Recipe.from_dict(_read(path))
        raise errors.UserInputError(
            f"Unknown recipe {text!r}: it is neither a built-in recipe nor a .json file. "
            f"Built-in recipes: {', '.join(builtin_names())} (list them with edgekit-recipes). "
            + errors.received(recipe=text)
        )
    raise errors.UserInputError(
        "A recipe is a built-in name, a path to a .json file, a dict or a Recipe. "
        + errors.received(recipe=type(recipe).__name__)
    )


def describe(name: str) -> str:
    """The one-line description of a built-in recipe."""
    return resolve_recipe(name).description
