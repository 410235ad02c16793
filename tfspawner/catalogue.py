"""The image catalogue file: each alias's pins, newest last, and how to rebuild it.

``tfspawner images rebuild`` appends pins, ``rollback`` moves back one, and the
hub reads the current pins at each spawn (``TFSpawner.image_catalogue_file``)::

    {
      "images": {
        "tf-cpu": {
          "recipe": {
            "base": "tensorflow/tensorflow:2.9.3-jupyter",
            "repository": "registry.example.edu/tf/2.9-jupyterhub",
            "context": "/srv/tfspawner/deploy/images",
            "dockerfile": "Dockerfile",
            "build_args": {}
          },
          "pins": [
            {"image": "registry.example.edu/tf/2.9-jupyterhub:20260601@sha256:...",
             "base": "tensorflow/tensorflow:2.9.3-jupyter@sha256:...",
             "built": "2026-06-01T03:00:00Z"}
          ],
          "current": 0
        }
      }
    }

Pure apart from ``load`` and ``save``; ``save`` replaces the file in one
rename, so the hub never reads half a file.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import tempfile
from collections.abc import Iterable, Mapping
from typing import Any

from . import imageref

RECIPE_KEYS = {"base", "repository", "context", "dockerfile", "build_args"}


class CatalogueError(ValueError):
    """The catalogue file is unreadable or malformed; the message names the file and alias."""


def empty() -> dict:
    return {"images": {}}


def load(path: str, missing_ok: bool = True) -> dict:
    """The catalogue at ``path``, checked; an absent file is an empty catalogue."""
    try:
        with open(path) as f:
            data = json.load(f)
    except FileNotFoundError:
        if missing_ok:
            return empty()
        raise CatalogueError(f"{path}: no such file") from None
    except (OSError, ValueError) as e:
        raise CatalogueError(f"{path}: {e}") from None
    try:
        validate(data)
    except CatalogueError as e:
        raise CatalogueError(f"{path}: {e}") from None
    return data


def save(path: str, data: dict) -> None:
    """Write ``data`` to ``path`` atomically, readable by the hub only (mode 0600)."""
    validate(data)
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".catalogue-", dir=directory)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=2, sort_keys=True)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def validate(data: Any) -> None:
    if not isinstance(data, dict) or not isinstance(data.get("images"), dict):
        raise CatalogueError('must be a JSON object with an "images" object')
    for alias, entry in data["images"].items():
        where = f"images[{alias!r}]"
        if not isinstance(entry, dict):
            raise CatalogueError(f"{where} must be an object")
        pins = entry.get("pins", [])
        if not isinstance(pins, list):
            raise CatalogueError(f"{where}.pins must be a list")
        for i, pin in enumerate(pins):
            if not isinstance(pin, dict) or not isinstance(pin.get("image"), str):
                raise CatalogueError(f'{where}.pins[{i}] must be an object with an "image"')
            try:
                ref = imageref.parse(pin["image"])
            except imageref.InvalidImageReference as e:
                raise CatalogueError(f"{where}.pins[{i}]: {e}") from None
            if not ref.pinned:
                raise CatalogueError(f"{where}.pins[{i}]: {pin['image']!r} is not pinned by digest")
        current = entry.get("current", len(pins) - 1)
        if pins and (not isinstance(current, int) or not 0 <= current < len(pins)):
            raise CatalogueError(f"{where}.current must be an index into its pins")
        recipe = entry.get("recipe")
        if recipe is not None:
            _validate_recipe(where, recipe)


def _validate_recipe(where: str, recipe: Any) -> None:
    if not isinstance(recipe, dict):
        raise CatalogueError(f"{where}.recipe must be an object")
    unknown = set(recipe) - RECIPE_KEYS
    if unknown:
        raise CatalogueError(f"{where}.recipe: unknown keys {', '.join(sorted(unknown))}")
    for key in ("base", "repository"):
        if not isinstance(recipe.get(key), str):
            raise CatalogueError(f"{where}.recipe.{key} must be set")
    try:
        base = imageref.parse(recipe["base"])
        repository = imageref.parse(recipe["repository"])
    except imageref.InvalidImageReference as e:
        raise CatalogueError(f"{where}.recipe: {e}") from None
    if base.digest:
        raise CatalogueError(f"{where}.recipe.base names a tag to follow, not a digest")
    if repository.tag or repository.digest:
        raise CatalogueError(f"{where}.recipe.repository is a repository, without tag or digest")
    args = recipe.get("build_args", {})
    if not isinstance(args, dict) or not all(isinstance(v, str) for v in args.values()):
        raise CatalogueError(f"{where}.recipe.build_args must map names to strings")


def current_pins(data: Mapping) -> dict[str, str]:
    """alias -> the pinned reference new servers of that alias get."""
    pins = {}
    for alias, entry in data["images"].items():
        history = entry.get("pins") or []
        if history:
            pins[alias] = history[entry.get("current", len(history) - 1)]["image"]
    return pins


def set_recipe(data: dict, alias: str, recipe: dict) -> dict:
    data = copy.deepcopy(data)
    entry = data["images"].setdefault(alias, {"pins": []})
    entry["recipe"] = dict(recipe)
    validate(data)
    return data


def add_pin(data: dict, alias: str, image: str, base: str | None, built: str) -> dict:
    """A new catalogue in which ``image`` is the alias's current pin; earlier pins are kept."""
    data = copy.deepcopy(data)
    entry = data["images"].setdefault(alias, {"pins": []})
    pins = entry.setdefault("pins", [])
    pin = {"image": image, "built": built}
    if base:
        pin["base"] = base
    pins.append(pin)
    entry["current"] = len(pins) - 1
    validate(data)
    return data


def rollback(data: dict, alias: str) -> tuple[dict, str, str]:
    """A new catalogue whose current pin of ``alias`` is the one before; (data, from, to)."""
    entry = data["images"].get(alias)
    if entry is None:
        raise CatalogueError(f"no alias {alias!r} in the catalogue")
    pins = entry.get("pins") or []
    current = entry.get("current", len(pins) - 1)
    if current < 1:
        raise CatalogueError(f"{alias}: there is no earlier pin to go back to")
    data = copy.deepcopy(data)
    data["images"][alias]["current"] = current - 1
    return data, pins[current]["image"], pins[current - 1]["image"]


def all_pins(data: Mapping) -> Iterable[tuple[str, str, bool]]:
    """(alias, pinned reference, whether it is current) for every pin kept."""
    for alias, entry in data["images"].items():
        history = entry.get("pins") or []
        current = entry.get("current", len(history) - 1)
        for i, pin in enumerate(history):
            yield alias, pin["image"], i == current


def stale_servers(
    servers: Iterable[Mapping], profile_aliases: Mapping[str, str], pins: Mapping[str, str]
) -> list[dict]:
    """Running servers whose image digest is not their alias's current pin.

    ``servers`` are container records with ``profile`` and ``image`` (the pinned
    reference they were started from); ``profile_aliases`` maps profile slugs to
    image aliases; ``pins`` maps aliases to current pinned references.
    """
    stale = []
    for server in servers:
        alias = profile_aliases.get(server.get("profile", ""))
        current = pins.get(alias) if alias else None
        if current is None:
            continue
        try:
            running = imageref.parse(server.get("image", "")).digest
        except imageref.InvalidImageReference:
            running = None
        wanted = imageref.parse(current).digest
        if running != wanted:
            stale.append({**server, "alias": alias, "current": current})
    return stale
