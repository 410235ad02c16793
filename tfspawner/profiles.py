"""Profiles and the ``user_options`` schema.

One validation path for everything a user can send: the options form and a
REST body both end up in :func:`validate_user_options`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from . import limits

_SLUG = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?")
_KEYS = {
    "slug": str,
    "display_name": str,
    "description": str,
    "image": str,
    "gpus": int,
    "cpu_limit": (int, float),
    "mem_limit": (str, int),
    "shm_size": (str, int),
    "groups": list,
    "default": bool,
    "datasets": list,
}
_VOLUME_NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]*")
_REQUIRED = ("slug", "display_name", "image")


class ProfileError(ValueError):
    """A profile in the admin's config is invalid; the message names profile and key."""


class OptionsError(ValueError):
    """A user's options are invalid; the message is meant for the user."""


@dataclass(frozen=True)
class Dataset:
    """Course material mounted read-only: a volume name or an absolute host path."""

    source: str
    target: str


def _datasets(raw: list, where: str) -> tuple[Dataset, ...]:
    datasets = []
    for entry in raw:
        if not isinstance(entry, Mapping) or set(entry) != {"source", "target"}:
            raise ProfileError(
                f"{where}: each of 'datasets' must be {{'source': ..., 'target': ...}}"
            )
        source, target = entry["source"], entry["target"]
        if not (
            isinstance(target, str) and target.startswith("/") and ".." not in target.split("/")
        ):
            raise ProfileError(f"{where}: dataset target {target!r} must be an absolute path")
        if not isinstance(source, str) or not (
            source.startswith("/") or _VOLUME_NAME.fullmatch(source)
        ):
            raise ProfileError(
                f"{where}: dataset source {source!r} must be a volume name or an absolute host path"
            )
        datasets.append(Dataset(source, target))
    return tuple(datasets)


@dataclass(frozen=True)
class Profile:
    slug: str
    display_name: str
    image: str
    description: str = ""
    gpus: int = 0
    cpu_limit: float | None = None
    mem_limit: int | None = None
    shm_size: int | None = None
    groups: tuple[str, ...] = ()
    default: bool = False
    datasets: tuple[Dataset, ...] = ()

    def allowed_for(self, groups: Iterable[str], is_admin: bool) -> bool:
        return is_admin or not self.groups or bool(set(self.groups) & set(groups))


def validate_profiles(
    raw: Iterable[Mapping[str, Any]], image_aliases: Iterable[str]
) -> list[Profile]:
    """Check the admin's ``profiles`` config; raise ProfileError naming the profile and key."""
    aliases = set(image_aliases)
    profiles: list[Profile] = []
    for position, entry in enumerate(raw):
        where = f"profile #{position + 1}"
        if not isinstance(entry, Mapping):
            raise ProfileError(f"{where} must be a dict, not {type(entry).__name__}")
        if isinstance(entry.get("slug"), str):
            where = f"profile {entry['slug']!r}"
        unknown = sorted(set(entry) - set(_KEYS))
        if unknown:
            raise ProfileError(f"{where}: unknown key(s) {unknown}; known keys: {sorted(_KEYS)}")
        for key in _REQUIRED:
            if key not in entry:
                raise ProfileError(f"{where}: missing required key {key!r}")
        for key, value in entry.items():
            if not isinstance(value, _KEYS[key]) or (isinstance(value, bool) and key != "default"):
                raise ProfileError(f"{where}: {key!r} has the wrong type ({value!r})")
        slug = entry["slug"]
        if not _SLUG.fullmatch(slug):
            raise ProfileError(
                f"{where}: 'slug' must be lowercase letters, digits and '-' (at most 64)"
            )
        if any(p.slug == slug for p in profiles):
            raise ProfileError(f"{where}: 'slug' is used by another profile")
        if entry["image"] not in aliases:
            raise ProfileError(
                f"{where}: 'image' {entry['image']!r} is not an alias in TFSpawner.images "
                f"({', '.join(sorted(aliases)) or 'none defined'})"
            )
        gpus = entry.get("gpus", 0)
        if gpus < 0:
            raise ProfileError(f"{where}: 'gpus' must be 0 or more")
        groups = entry.get("groups", [])
        if not all(isinstance(g, str) and g for g in groups):
            raise ProfileError(f"{where}: 'groups' must be a list of group names")
        try:
            cpu_limit = limits.parse_cpus(entry["cpu_limit"]) if "cpu_limit" in entry else None
            mem_limit = limits.parse_bytes(entry["mem_limit"]) if "mem_limit" in entry else None
            shm_size = limits.parse_bytes(entry["shm_size"]) if "shm_size" in entry else None
        except ValueError as e:
            raise ProfileError(f"{where}: {e}") from None
        profiles.append(
            Profile(
                slug=slug,
                display_name=entry["display_name"],
                description=entry.get("description", ""),
                image=entry["image"],
                gpus=gpus,
                cpu_limit=cpu_limit,
                mem_limit=mem_limit,
                shm_size=shm_size,
                groups=tuple(groups),
                default=entry.get("default", False),
                datasets=_datasets(entry.get("datasets", []), where),
            )
        )
    if sum(p.default for p in profiles) > 1:
        raise ProfileError("more than one profile has 'default': True")
    return profiles


def default_profile(profiles: list[Profile]) -> Profile:
    return next((p for p in profiles if p.default), profiles[0])


def validate_user_options(
    options: Any,
    profiles: list[Profile],
    *,
    groups: Iterable[str],
    is_admin: bool,
    last: str = "",
) -> Profile:
    """Return the profile chosen by ``options``; raise OptionsError with a sentence for the user.

    ``{}`` means the user's ``last`` profile if they may still use it, else the default.
    """
    if not isinstance(options, Mapping):
        raise OptionsError('Server options must be a JSON object such as {"profile": "cpu"}.')
    unknown = sorted(map(str, set(options) - {"profile"}))
    if unknown:
        named = ", ".join(echo(key) for key in unknown[:ECHO_KEYS])
        more = f" and {len(unknown) - ECHO_KEYS} more" if len(unknown) > ECHO_KEYS else ""
        raise OptionsError(
            f'Unknown server option(s): {named}{more}. The only option is "profile".'
        )
    allowed = [p for p in profiles if p.allowed_for(groups, is_admin)]
    if not allowed:
        raise OptionsError(
            "No server profile is available to you; please ask the hub's administrator."
        )
    slug = options.get("profile")
    if slug is None:
        for profile in allowed:
            if profile.slug == last:
                return profile
        default = default_profile(profiles)
        return default if default in allowed else allowed[0]
    if not isinstance(slug, str):
        raise OptionsError('The profile must be given as text, for example "cpu".')
    for profile in profiles:
        if profile.slug == slug:
            if profile not in allowed:
                raise OptionsError(f"You are not allowed to use the profile {echo(slug)!r}.")
            return profile
    names = ", ".join(p.slug for p in allowed)
    raise OptionsError(f"There is no profile called {echo(slug)!r}. Choose one of: {names}.")


# Echoed text in refusals stays short: options come from anyone with a login.
ECHO_LIMIT = 40
# Most unknown keys named in a refusal.
ECHO_KEYS = 5


def echo(value: Any) -> str:
    """``value`` for a refusal message, cut to ``ECHO_LIMIT`` characters.

    The hub's pages escape messages; this keeps a hostile key from filling them.
    """
    text = value if isinstance(value, str) else repr(value)
    if len(text) > ECHO_LIMIT:
        text = text[: ECHO_LIMIT - 1] + "…"
    return text


# The form has one short field; anything near this is not a person choosing a profile.
MAX_FORM_CHARS = 4096


def options_from_form(formdata: Mapping[str, list[str]]) -> dict:
    """Form fields arrive as lists of strings; keep every key so unknown ones are refused."""
    size = sum(len(key) + sum(map(len, values)) for key, values in formdata.items())
    if size > MAX_FORM_CHARS:
        raise OptionsError("These server options are too large, so nothing was started or saved.")
    options: dict[str, Any] = {}
    for key, values in formdata.items():
        if key == "_xsrf":  # the hub's CSRF token travels with the form, it is no option
            continue
        if len(values) != 1:
            raise OptionsError(f"The form field {echo(key)!r} must have exactly one value.")
        options[key] = values[0]
    return options
