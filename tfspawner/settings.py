"""The admin's config, checked once and frozen: what every spawn, form, API and command reads.

``build`` turns the ``TFSpawner`` traits into one immutable ``Settings`` or
raises ``ConfigError`` naming the setting. ``of`` keeps one per distinct
config, rebuilt only when the config or the image catalogue file changes, so
a monthly rebuild's new pins reach the next spawn without a hub restart.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from . import allowlist, catalogue, form, gpupool, identity, imageref, limits, nvml, profiles
from .errors import ConfigError

IMPLICIT_PROFILE = "default"

# The traits the settings are built from; a change to any of them builds new settings.
_TRAITS = (
    "hub_name",
    "images",
    "image",
    "image_catalogue_file",
    "allow_unpinned_images",
    "profiles",
    "gpu_pool",
    "gpu_limit_per_user",
    "gpu_limit_per_group",
    "shm_size",
    "shm_size_per_gpu",
    "uid_strategy",
    "uid_callable",
    "uid_base",
    "gid",
    "uid_map",
    "passwd_min_uid",
    "uid_registry_file",
    "volume_per_server",
    "volume_host_root",
    "remove_volumes_on_user_delete",
    "options_form_template",
    "extra_host_config",
    "extra_create_kwargs",
    "volumes",
    "read_only_volumes",
    "mounts",
    "cap_add",
    "network_name",
    "allow_unsafe_container_settings",
)


@dataclass(frozen=True)
class Identity:
    """How a user's uid and gid are chosen (``TFSpawner.uid_*``)."""

    strategy: str
    base: int
    gid: int
    uid_map: Mapping[str, object]
    callable: Any
    passwd_min_uid: int
    registry_file: str


@dataclass(frozen=True)
class Storage:
    """Where notebooks live (``TFSpawner.volume_*``)."""

    per_server: bool
    host_root: str | None
    remove_on_user_delete: bool


@dataclass(frozen=True)
class Settings:
    hub_name: str
    refs: Mapping[str, imageref.ImageRef]
    profiles: tuple[profiles.Profile, ...]
    gpus: tuple[gpupool.GPU, ...]
    gpu_limit_per_user: int | None
    gpu_limit_per_group: Mapping[str, int]
    shm_size: int | None
    shm_size_per_gpu: int
    identity: Identity
    storage: Storage
    form_template: str | None
    # Settings the admin let through the allowlist on purpose, for the log.
    unchecked: tuple[str, ...] = ()

    def image_of(self, profile: profiles.Profile) -> str:
        return str(self.refs[profile.image])

    def gpu_cap(self, groups: list[str]) -> int | None:
        """How many GPUs a member of ``groups`` may hold at once; None for no cap."""
        return gpupool.effective_cap(
            self.gpu_limit_per_user, dict(self.gpu_limit_per_group), groups
        )

    def shm_size_for(self, profile: profiles.Profile) -> int | None:
        if profile.shm_size is not None:
            return profile.shm_size
        if profile.gpus:
            return profile.gpus * self.shm_size_per_gpu
        return self.shm_size


def _refs(config) -> dict[str, imageref.ImageRef]:
    try:
        from_file = (
            catalogue.current_pins(catalogue.load(config.image_catalogue_file))
            if config.image_catalogue_file
            else {}
        )
    except catalogue.CatalogueError as e:
        raise ConfigError(f"TFSpawner.image_catalogue_file: {e}") from None
    merged = {**config.images, **from_file}
    entries = merged or {IMPLICIT_PROFILE: config.image}
    setting = "TFSpawner.images" if merged else "TFSpawner.image"
    refs = {}
    for alias, reference in entries.items():
        where = f"{setting}[{alias!r}]" if merged else setting
        if alias in from_file:
            where = f"{config.image_catalogue_file}[{alias!r}]"
        try:
            ref = imageref.parse(reference)
        except imageref.InvalidImageReference as e:
            raise ConfigError(f"{where}: {e}") from None
        if not ref.pinned and not config.allow_unpinned_images:
            raise ConfigError(
                f"{where}: {reference!r} is not pinned by digest. Use "
                "'name@sha256:<digest>' (`tfspawner images pin REF` prints it), or set "
                "TFSpawner.allow_unpinned_images = True for development."
            )
        refs[alias] = ref
    return refs


def _bytes(setting: str, value) -> int | None:
    if value is None:
        return None
    try:
        return limits.parse_bytes(value)
    except ValueError as e:
        raise ConfigError(f"TFSpawner.{setting}: {e}") from None


def _gpus(gpu_pool) -> tuple[gpupool.GPU, ...]:
    if gpu_pool == "auto":
        try:
            return tuple(nvml.discover())
        except nvml.GPUDiscoveryError as e:
            raise ConfigError(str(e)) from None
    if isinstance(gpu_pool, str):
        raise ConfigError(f"TFSpawner.gpu_pool: {gpu_pool!r} must be 'auto' or a list of GPU ids")
    try:
        return tuple(gpupool.parse_pool(gpu_pool))
    except ValueError as e:
        raise ConfigError(f"TFSpawner.gpu_pool: {e}") from None


def _identity(config) -> Identity:
    if config.uid_strategy not in identity.STRATEGIES:
        raise ConfigError(
            f"TFSpawner.uid_strategy: {config.uid_strategy!r} is not one of "
            f"{', '.join(identity.STRATEGIES)}"
        )
    if config.uid_strategy == "callable" and not callable(config.uid_callable):
        raise ConfigError("TFSpawner.uid_callable: must be set when uid_strategy is 'callable'")
    return Identity(
        strategy=config.uid_strategy,
        base=config.uid_base,
        gid=config.gid,
        uid_map=MappingProxyType(dict(config.uid_map)),
        callable=config.uid_callable,
        passwd_min_uid=config.passwd_min_uid,
        registry_file=config.uid_registry_file,
    )


def _check_caps(config) -> None:
    caps = [("gpu_limit_per_user", config.gpu_limit_per_user)]
    caps += [(f"gpu_limit_per_group[{g!r}]", c) for g, c in config.gpu_limit_per_group.items()]
    for name, cap in caps:
        if cap is not None and cap < 0:
            raise ConfigError(f"TFSpawner.{name}: must be 0 or more, not {cap}")


def _check_form_template(path: str | None) -> None:
    if path:
        try:
            form.environment(path).get_template(os.path.basename(path))
        except Exception as e:
            raise ConfigError(f"TFSpawner.options_form_template: {e}") from None


def build(config) -> Settings:
    """Check the traits of ``config`` (a TFSpawner) and freeze them; raise ConfigError naming one."""
    refs = _refs(config)
    raw_profiles = config.profiles or [
        {"slug": IMPLICIT_PROFILE, "display_name": "Default", "image": next(iter(refs))}
    ]
    try:
        checked = profiles.validate_profiles(raw_profiles, refs)
    except profiles.ProfileError as e:
        raise ConfigError(f"TFSpawner.profiles: {e}") from None
    shm_size = _bytes("shm_size", config.shm_size)
    shm_size_per_gpu = _bytes("shm_size_per_gpu", config.shm_size_per_gpu)
    ids = _identity(config)
    if config.volume_host_root is not None and not config.volume_host_root.startswith("/"):
        raise ConfigError("TFSpawner.volume_host_root: must be an absolute path")
    _check_form_template(config.options_form_template)
    _check_caps(config)
    try:
        # Callables are checked at each spawn, with the user they depend on.
        unchecked = allowlist.check_admin_settings(
            extra_host_config=config.extra_host_config,
            extra_create_kwargs=config.extra_create_kwargs,
            volumes=config.volumes,
            read_only_volumes=config.read_only_volumes,
            mounts=config.mounts,
            datasets={p.slug: [d.source for d in p.datasets] for p in checked},
            cap_add=config.cap_add,
            network_name=config.network_name,
            allow_unsafe=config.allow_unsafe_container_settings,
        )
    except allowlist.UnsafeContainerConfig as e:
        raise ConfigError(str(e)) from None
    return Settings(
        hub_name=config.hub_name,
        refs=MappingProxyType(refs),
        profiles=tuple(checked),
        gpus=_gpus(config.gpu_pool),
        gpu_limit_per_user=config.gpu_limit_per_user,
        gpu_limit_per_group=MappingProxyType(dict(config.gpu_limit_per_group)),
        shm_size=shm_size,
        shm_size_per_gpu=shm_size_per_gpu,
        identity=ids,
        storage=Storage(
            per_server=config.volume_per_server,
            host_root=config.volume_host_root,
            remove_on_user_delete=config.remove_volumes_on_user_delete,
        ),
        form_template=config.options_form_template,
        unchecked=tuple(unchecked),
    )


def _catalogue_stamp(path: str | None) -> tuple:
    if not path:
        return ()
    try:
        status = os.stat(path)
    except OSError:
        return (path, None)
    return (path, status.st_mtime_ns, status.st_size)


# One Settings per distinct config, shared by every spawner of the process.
_built: dict[tuple, Settings] = {}


def of(config, log=None) -> Settings:
    """The settings for ``config``'s current traits, built once per distinct config."""
    values = tuple(_fingerprint(getattr(config, name)) for name in _TRAITS)
    key = (values, _catalogue_stamp(config.image_catalogue_file))
    settings = _built.get(key)
    if settings is None:
        settings = build(config)
        if log is not None:
            allowlist.warn_unchecked(log, settings.unchecked)
        _built[key] = settings
    return settings


def _fingerprint(value) -> Any:
    # Callables compare by identity; everything else by its repr.
    return id(value) if callable(value) else repr(value)
