"""Profiles and the ``user_options`` schema.

One validation path for everything a user can send: the options form and a
REST body both end up in :func:`validate_user_options`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from . import limits

_SLUG = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?")
_VOLUME_NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]*")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# Set by the hub or the spawner for every server; a profile must not change them.
_RESERVED_ENV = re.compile(r"(JUPYTERHUB_.*|JPY_.*|NVIDIA_.*|CUDA_VISIBLE_DEVICES|HOME)")


class ProfileError(ValueError):
    """A profile in the admin's config is invalid; the message names profile and key."""


class OptionsError(ValueError):
    """A user's options are invalid; the message is meant for the user."""


@dataclass(frozen=True)
class Dataset:
    """Course material mounted read-only: a volume name or an absolute host path."""

    source: str
    target: str


def _as_is(value: Any, where: str) -> Any:
    return value


def _gpus(value: int, where: str) -> int:
    if value < 0:
        raise ProfileError(f"{where}: 'gpus' must be 0 or more")
    return value


def _groups(value: list, where: str) -> tuple[str, ...]:
    if not all(isinstance(g, str) and g for g in value):
        raise ProfileError(f"{where}: 'groups' must be a list of group names")
    return tuple(value)


def _limit(parse: Callable[[Any], Any]) -> Callable[[Any, str], Any]:
    def checked(value: Any, where: str) -> Any:
        try:
            return parse(value)
        except ValueError as e:
            raise ProfileError(f"{where}: {e}") from None

    return checked


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


def _extra_env(raw: Mapping, where: str) -> tuple[tuple[str, str], ...]:
    for name, value in raw.items():
        if not (isinstance(name, str) and _ENV_NAME.fullmatch(name)):
            raise ProfileError(f"{where}: 'extra_env' name {name!r} is not a variable name")
        if _RESERVED_ENV.fullmatch(name):
            raise ProfileError(
                f"{where}: 'extra_env' must not set {name}, which the hub sets for every server"
            )
        if not isinstance(value, str):
            raise ProfileError(f"{where}: 'extra_env' value of {name} must be text")
    return tuple(sorted(raw.items()))


@dataclass(frozen=True)
class Key:
    """One key of a profile dict: the types it accepts and how it becomes the field's value."""

    types: type | tuple[type, ...]
    parse: Callable[[Any, str], Any] = _as_is
    required: bool = False


def _key(types, parse=_as_is, *, required=False, default=None):
    return field(default=default, metadata={"key": Key(types, parse, required)})


@dataclass(frozen=True)
class Profile:
    """A server profile; the schema of the admin's profile dicts is these fields."""

    slug: str = _key(str, required=True, default="")
    display_name: str = _key(str, required=True, default="")
    image: str = _key(str, required=True, default="")
    description: str = _key(str, default="")
    gpus: int = _key(int, _gpus, default=0)
    cpu_limit: float | None = _key((int, float), _limit(limits.parse_cpus))
    mem_limit: int | None = _key((str, int), _limit(limits.parse_bytes))
    shm_size: int | None = _key((str, int), _limit(limits.parse_bytes))
    groups: tuple[str, ...] = _key(list, _groups, default=())
    default: bool = _key(bool, default=False)
    datasets: tuple[Dataset, ...] = _key(list, _datasets, default=())
    # Variables for every server of this profile, e.g. a course's data URL.
    extra_env: tuple[tuple[str, str], ...] = _key(dict, _extra_env, default=())

    def allowed_for(self, groups: Iterable[str], is_admin: bool) -> bool:
        return is_admin or not self.groups or bool(set(self.groups) & set(groups))


SCHEMA: dict[str, Key] = {f.name: f.metadata["key"] for f in fields(Profile)}


def _profile(entry: Mapping[str, Any], where: str) -> Profile:
    unknown = sorted(set(entry) - set(SCHEMA))
    if unknown:
        raise ProfileError(f"{where}: unknown key(s) {unknown}; known keys: {sorted(SCHEMA)}")
    for name, key in SCHEMA.items():
        if key.required and name not in entry:
            raise ProfileError(f"{where}: missing required key {name!r}")
    values = {}
    for name, value in entry.items():
        types = SCHEMA[name].types
        # bool is an int to Python, never to an admin.
        if not isinstance(value, types) or (isinstance(value, bool) and types is not bool):
            raise ProfileError(f"{where}: {name!r} has the wrong type ({value!r})")
        values[name] = SCHEMA[name].parse(value, where)
    if not _SLUG.fullmatch(values["slug"]):
        raise ProfileError(
            f"{where}: 'slug' must be lowercase letters, digits and '-' (at most 64)"
        )
    return Profile(**values)


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
        profile = _profile(entry, where)
        if any(p.slug == profile.slug for p in profiles):
            raise ProfileError(f"{where}: 'slug' is used by another profile")
        if profile.image not in aliases:
            raise ProfileError(
                f"{where}: 'image' {profile.image!r} is not an alias in TFSpawner.images "
                f"({', '.join(sorted(aliases)) or 'none defined'})"
            )
        profiles.append(profile)
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
