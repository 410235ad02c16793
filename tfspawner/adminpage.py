"""The admins' page /hub/tfspawner, in the hub's own look.

It renders with the hub's jinja environment, so it has the hub's navigation
bar and theme toggle, and the hub's ``page.html`` gets a link to it for those
who may open it. Nothing needs configuring: ``hub.install`` registers the
handlers and ``install_templates`` the templates when the spawner is TFSpawner.

Access, with the hub's own scopes:

- the page and its link need ``admin-ui`` and ``read:servers`` (the GPU API's
  scope) on every user; others get the hub's 403 page;
- removing a server the hub does not know needs ``admin:servers`` too, and is
  a POST with the hub's ``_xsrf`` token, after a confirmation page.

The tables come from ``adminview.admin_view``, the same data as
``/hub/api/tfspawner/gpus``; ``admin.js`` fetches that API every few seconds
and fills the tables again with ``textContent``. Without JavaScript the page
is the same tables, as of the last load.
"""

from __future__ import annotations

import datetime
import hashlib
from pathlib import Path
from urllib.parse import urlencode

import jinja2
from jupyterhub.handlers import BaseHandler
from tornado import web

from . import adminview
from .gpupool import Owner

TEMPLATE_DIR = Path(__file__).parent / "templates" / "hub"
SCRIPT = TEMPLATE_DIR / "admin.js"
# page.html of the hub as it was before ours: an admin's own, else JupyterHub's.
HUB_PREFIX = "tfspawner-hub"
VIEW_SCOPES = ("admin-ui", "read:servers")
REMOVE_SCOPES = (*VIEW_SCOPES, "admin:servers")


# --- templates -------------------------------------------------------------------------


class _PageLoader(jinja2.BaseLoader):
    """``page.html`` is tfspawner's, which extends the page.html the hub had."""

    def __init__(self, own: jinja2.BaseLoader):
        self.own = own

    def get_source(self, environment, template):
        if template != "page.html":
            raise jinja2.TemplateNotFound(template)
        return self.own.get_source(environment, template)


def hub_loader(previous: jinja2.BaseLoader) -> jinja2.BaseLoader:
    own = jinja2.FileSystemLoader(str(TEMPLATE_DIR))
    loader = jinja2.ChoiceLoader(
        [
            jinja2.PrefixLoader({"tfspawner": own, HUB_PREFIX: previous}, delimiter="/"),
            _PageLoader(own),
            previous,
        ]
    )
    loader.tfspawner = True
    return loader


def install_templates(settings: dict) -> None:
    """Put tfspawner's templates in front of the hub's jinja environments (async and sync)."""
    envs = [settings.get(key) for key in ("jinja2_env", "jinja2_env_sync")]
    for env in envs:
        if env is None or getattr(env.loader, "tfspawner", False):
            continue
        env.loader = hub_loader(env.loader)


# --- what the tables show --------------------------------------------------------------


def since(when: str | float | None, now: datetime.datetime) -> str:
    """An ISO time or a Unix timestamp (the boot queue's), as "2026-11-26 07:00 UTC (30 min)"."""
    if when is None or when == "":
        return ""
    if isinstance(when, int | float):
        started = datetime.datetime.fromtimestamp(when, datetime.timezone.utc)
    else:
        started = datetime.datetime.fromisoformat(when)
    minutes = max(0, int((now - started).total_seconds() // 60))
    return f"{started:%Y-%m-%d %H:%M} UTC ({minutes} min)"


def duration(seconds) -> str:
    if seconds is None:
        return ""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    return f"{seconds // 60} min {seconds % 60} s"


def _server(name: str) -> str:
    return name or "(default)"


def _gpu_rows(view: dict, now: datetime.datetime) -> list[dict]:
    rows = []
    for gpu in view["gpus"]:
        held = gpu.get("held_by")
        row = {
            "id": gpu["id"],
            "node": gpu.get("node", ""),
            "model": f"{gpu.get('name') or ''} {gpu.get('memory') or ''}".strip(),
            "status": "free",
            "status_class": "free",
            "user": "",
            "server": "",
            "profile": "",
            "since": "",
        }
        if held:
            status = "held"
            if not held.get("known_to_hub", True):
                status = "held, not known to the hub"
                if held.get("hub") and held["hub"] != view.get("hub_name"):
                    status += f" (hub {held['hub']})"
            row.update(
                status=status,
                status_class="held",
                user=held.get("user") or held.get("container", ""),
                server=_server(held.get("server", "")),
                profile=held.get("profile", ""),
                since=since(held.get("since"), now),
            )
        rows.append(row)
    return rows


def _queue(view: dict, now: datetime.datetime) -> dict:
    queue = view.get("boot_queue")
    if not queue:
        return {
            "summary": "No boot queue on this hub: servers boot as soon as they are asked for.",
            "rows": [],
        }
    booting, waiting = queue.get("booting") or [], queue.get("waiting") or []
    median = queue.get("median_boot_s")
    summary = (
        f"{queue.get('length', len(waiting))} waiting; {len(booting)} of "
        f"{queue.get('slots', '?')} boot slots in use; median boot time "
        + (duration(median) if median is not None else "not known yet")
        + "."
    )
    rows = [
        {
            "place": "booting",
            "label": entry.get("label", ""),
            "since": since(entry.get("since"), now),
            "waited": duration(entry.get("elapsed_s")),
            "estimate": "",
        }
        for entry in booting
    ] + [
        {
            "place": entry.get("place", ""),
            "label": entry.get("label", ""),
            "since": since(entry.get("since"), now),
            "waited": duration(entry.get("waited_s")),
            "estimate": duration(entry.get("estimate_s")),
        }
        for entry in waiting
    ]
    return {"summary": summary, "rows": rows}


def _catalogue(images: dict) -> str:
    if not images.get("catalogue_file"):
        text = "No image catalogue file: the pins come from TFSpawner.images."
    elif images.get("last_rebuilt"):
        text = f"The image catalogue was last rebuilt {images['last_rebuilt'][:16].replace('T', ' ')} UTC."
    else:
        text = "The image catalogue has no rebuilt images yet."
    if images.get("error"):
        text += f" {images['error']}"
    return text


def present(view: dict, now: datetime.datetime | None = None) -> dict:
    """The view as the table cells show them; admin.js makes the same from the API."""
    if now is None:
        now = datetime.datetime.fromisoformat(view["generated"]) if view.get("generated") else None
        now = now or datetime.datetime.now(datetime.timezone.utc)
    images = view.get("images") or {}
    return {
        "updated": f"{now:%H:%M:%S} UTC",
        "nodes": any("node" in gpu for gpu in view["gpus"]),
        "gpus": _gpu_rows(view, now),
        "queue": _queue(view, now),
        "unknown": [
            {
                "user": server["user"],
                "server": _server(server["server"]),
                "gpus": ", ".join(server.get("gpus") or []) or "none",
                "profile": server.get("profile") or "-",
                "container": server.get("container", ""),
                "since": since(server.get("since"), now),
                "query": {"user": server["user"], "server": server["server"]},
            }
            for server in view.get("not_known_to_hub", [])
        ],
        "images": [
            {
                **image,
                "built": since(image["built"], now)
                if image.get("built")
                else "in TFSpawner.images",
            }
            for image in images.get("aliases", [])
        ],
        "catalogue": _catalogue(images),
        "stale": [
            {**server, "server": _server(server["server"]), "since": since(server["since"], now)}
            for server in view.get("stale_images", [])
        ],
        "script_version": _script_version(),
    }


def _script_version() -> str:
    return hashlib.sha256(SCRIPT.read_bytes()).hexdigest()[:12]


# --- handlers --------------------------------------------------------------------------


class _AdminBase(BaseHandler):
    def may(self, scopes) -> bool:
        # Unfiltered scopes only: "read:servers!user=x" is not every server.
        return all(scope in self.expanded_scopes for scope in scopes)

    def require(self, scopes) -> None:
        if not self.may(scopes):
            raise web.HTTPError(403, "Only admins may open this page.", reason="Forbidden")

    def page_url(self, **query) -> str:
        url = self.hub.base_url + "tfspawner"
        return url + ("?" + urlencode(query) if query else "")

    def _owner(self) -> Owner:
        user = self.get_argument("user", "")
        if not user:
            raise web.HTTPError(400, "Which server? The user is missing.", reason="Bad Request")
        return Owner(user, self.get_argument("server", ""))

    def _active(self, owner: Owner) -> bool:
        """Whether the hub has this server starting, running or stopping in memory."""
        user = self.find_user(owner.user)
        # .get: indexing would make a spawner for a name the hub has never seen.
        spawner = user.spawners.get(owner.server) if user is not None else None
        return spawner is not None and bool(spawner.active or spawner.pending)


class AdminPageHandler(_AdminBase):
    """GET /hub/tfspawner: the page."""

    @web.authenticated
    async def get(self):
        self.require(VIEW_SCOPES)
        view = await adminview.admin_view(self.db)
        removed = self.get_argument("removed", "")
        message = ""
        if removed:
            message = (
                f"Removed the server {removed}: its container is gone, its GPUs are free "
                "again, and its notebooks stay."
            )
        html = await self.render_template(
            "tfspawner/admin.html",
            view=view,
            page=present(view),
            message=message,
            may_remove=self.may(REMOVE_SCOPES),
            tfspawner_page=True,
        )
        self.finish(html)


class RemoveHandler(_AdminBase):
    """/hub/tfspawner/remove: GET asks for confirmation, POST (with _xsrf) removes."""

    @web.authenticated
    async def get(self):
        self.require(REMOVE_SCOPES)
        owner = self._owner()
        view = await adminview.admin_view(self.db)
        page = present(view)
        found = [
            server
            for server in page["unknown"]
            if Owner(server["query"]["user"], server["query"]["server"]) == owner
        ]
        html = await self.render_template(
            "tfspawner/remove.html",
            owner=owner,
            found=found,
            known=self._active(owner),
            tfspawner_page=True,
        )
        self.finish(html)

    @web.authenticated
    async def post(self):
        self.require(REMOVE_SCOPES)
        owner = self._owner()
        try:
            await adminview.remove_unknown(self.db, owner, self._active(owner))
        except adminview.RemoveRefused as e:
            raise web.HTTPError(409, str(e), reason="Conflict") from None
        self.redirect(self.page_url(removed=str(owner)), status=303)


class ScriptHandler(_AdminBase):
    """The page's refresh script; it carries no data."""

    def get(self):
        self.set_header("Content-Type", "text/javascript; charset=utf-8")
        self.set_header("Cache-Control", "private, max-age=3600")
        self.finish(SCRIPT.read_bytes())


# For the hub's extra_handlers (under /hub/).
HANDLERS = [
    (r"/tfspawner", AdminPageHandler),
    (r"/tfspawner/remove", RemoveHandler),
    (r"/tfspawner/admin\.js", ScriptHandler),
]
