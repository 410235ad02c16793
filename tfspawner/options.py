"""The one path from what a user sends (form, link or REST body) to a profile.

The spawner's ``options_from_form``, ``options_from_query`` and
``choose_profile`` are these functions; refusals are sentences for students.
The form that offers the profiles (``render_form``) and the options kept for
the next start (``store``) are here too.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable, Mapping

from sqlalchemy.orm import object_session

from . import form, messages, profiles


def from_form(formdata: Mapping[str, list[str]]) -> dict:
    try:
        return profiles.options_from_form(formdata)
    except profiles.OptionsError as e:
        raise messages.bad_options(str(e)) from None


def from_link(handler, query_data: Mapping[str, list[str]]) -> dict:
    """Options from ``GET /hub/spawn?profile=...``, only when it carries the session's XSRF token.

    JupyterHub starts a server from such a link with no forgery check, so any
    web page could start GPU servers for whoever follows its link. Without the
    token the form is shown instead, with the linked profile preselected.
    """
    token = handler.get_query_argument("_xsrf", None) if handler is not None else None
    if not token or not hmac.compare_digest(token.encode(), handler.xsrf_token):
        raise messages.check_the_form()
    return from_form(query_data)


def linked_profile(handler) -> str:
    """The profile a spawn link asked for, to preselect it in the form."""
    if handler is None or handler.request.method != "GET":
        return ""
    return handler.get_query_argument("profile", "") or handler.get_query_argument(
        "opt-profile", ""
    )


def choose(
    user_options,
    available: Iterable[profiles.Profile],
    *,
    groups: list[str],
    is_admin: bool,
    last: str,
) -> profiles.Profile:
    try:
        return profiles.validate_user_options(
            user_options or {}, list(available), groups=groups, is_admin=is_admin, last=last
        )
    except profiles.OptionsError as e:
        raise messages.bad_options(str(e)) from None


def preselected(
    allowed: list[profiles.Profile],
    available: Iterable[profiles.Profile],
    *,
    linked: str,
    asked: str | None,
    last: str,
) -> str:
    """The profile the form shows selected: a link's, then the request's, the last one, the default."""
    return (
        (linked if linked in {p.slug for p in allowed} else "")
        or asked
        or last
        or profiles.default_profile(list(available)).slug
    )


def render_form(
    settings,
    allowed: list[profiles.Profile],
    pool,
    *,
    handler,
    asked: str | None,
    last: str,
    notice: str,
    default_mem,
    default_cpu,
) -> str:
    """The spawn form for ``allowed`` profiles, with the pool's free GPUs and the right one selected."""
    choices = form.choices(
        allowed,
        free_gpus=len(pool.free()),
        total_gpus=pool.total,
        default_mem=default_mem,
        default_cpu=default_cpu,
    )
    selected = preselected(
        allowed, settings.profiles, linked=linked_profile(handler), asked=asked, last=last
    )
    return form.render(
        choices, selected=selected, notice=notice, template_path=settings.form_template
    )


def store(orm_spawner, slug: str) -> dict:
    """The options that start ``slug`` again, also written to the hub's database row."""
    kept = {"profile": slug} if slug else {}
    if orm_spawner is not None:
        # JupyterHub 6's admin panel shows this in its Profile column.
        orm_spawner.user_options = dict(kept)
        session = object_session(orm_spawner)
        if session is not None:
            session.commit()
    return kept
