"""A read-only GPU pool page for admins, as a hub-managed service.

It appears in the hub's "Services" menu. Only users with access to the
service (admins, by default) can open it; it reads the hub's
``/hub/api/tfspawner/gpus`` with its own read-only token.

In jupyterhub_config.py::

    from tfspawner.poolpage import service_config
    service, role = service_config(port=10101)
    c.JupyterHub.services.append(service)
    c.JupyterHub.load_roles.append(role)
"""

from __future__ import annotations

import datetime
import json
import os
import sys
from urllib.parse import urlparse

import jinja2
from jupyterhub.services.auth import HubOAuthCallbackHandler, HubOAuthenticated
from jupyterhub.utils import url_path_join
from tornado import httpclient, ioloop, web

from .form import TEMPLATE_DIR

SERVICE_NAME = "gpu-pool"


def service_config(port: int = 10101, name: str = SERVICE_NAME) -> tuple[dict, dict]:
    """The ``c.JupyterHub.services`` entry and the read-only role it needs."""
    service = {
        "name": name,
        "url": f"http://127.0.0.1:{port}",
        "command": [sys.executable, "-m", "tfspawner.poolpage"],
        "oauth_no_confirm": True,
    }
    role = {"name": f"{name}-service", "services": [name], "scopes": ["read:servers"]}
    return service, role


def render(view: dict, now: datetime.datetime) -> str:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATE_DIR)), autoescape=True)
    rows = [
        {**gpu, "since": _since(gpu["held_by"]["since"], now) if gpu["held_by"] else ""}
        for gpu in view["gpus"]
    ]
    unknown = [
        {**server, "since": _since(server["since"], now)}
        for server in view.get("not_known_to_hub", [])
    ]
    stale = [
        {**server, "since": _since(server["since"], now)} for server in view.get("stale_images", [])
    ]
    return env.get_template("pool_page.html").render(
        view=view, rows=rows, unknown=unknown, stale=stale
    )


def _since(iso: str, now: datetime.datetime) -> str:
    started = datetime.datetime.fromisoformat(iso)
    minutes = int((now - started).total_seconds() // 60)
    return f"{started:%Y-%m-%d %H:%M} UTC ({minutes} min)"


class PoolPage(HubOAuthenticated, web.RequestHandler):
    @web.authenticated
    async def get(self):
        hub_api = os.environ["JUPYTERHUB_API_URL"]
        token = os.environ["JUPYTERHUB_API_TOKEN"]
        response = await httpclient.AsyncHTTPClient().fetch(
            url_path_join(hub_api, "tfspawner/gpus"),
            headers={"Authorization": f"token {token}"},
        )
        view = json.loads(response.body)
        self.write(render(view, datetime.datetime.now(datetime.timezone.utc)))


def main() -> None:
    prefix = os.environ["JUPYTERHUB_SERVICE_PREFIX"]
    url = urlparse(os.environ["JUPYTERHUB_SERVICE_URL"])
    app = web.Application(
        [
            (prefix, PoolPage),
            (url_path_join(prefix, "oauth_callback"), HubOAuthCallbackHandler),
        ],
        cookie_secret=os.urandom(32),
    )
    app.listen(url.port, url.hostname)
    ioloop.IOLoop.current().start()


if __name__ == "__main__":
    main()
