"""The former GPU pool service: it now only redirects to the hub's page /hub/tfspawner.

That page needs no configuration. A hub whose jupyterhub_config.py still has ::

    from tfspawner.poolpage import service_config
    service, role = service_config(port=10101)
    c.JupyterHub.services.append(service)
    c.JupyterHub.load_roles.append(role)

keeps its "gpu-pool" link in the Services menu, which leads to the new page;
the service gets no token scopes, since it reads nothing. Remove those lines
to drop the link.
"""

from __future__ import annotations

import os
import sys
from urllib.parse import urlparse

from tornado import ioloop, web

SERVICE_NAME = "gpu-pool"


def service_config(port: int = 10101, name: str = SERVICE_NAME) -> tuple[dict, dict]:
    """The ``c.JupyterHub.services`` entry, and its role (no scopes)."""
    service = {
        "name": name,
        "url": f"http://127.0.0.1:{port}",
        "command": [sys.executable, "-m", "tfspawner.poolpage"],
    }
    role = {"name": f"{name}-service", "services": [name], "scopes": []}
    return service, role


class Redirect(web.RequestHandler):
    def get(self, _rest=""):
        base = os.environ.get("JUPYTERHUB_BASE_URL", "/")
        self.redirect(base.rstrip("/") + "/hub/tfspawner", permanent=True)


def main() -> None:
    prefix = os.environ["JUPYTERHUB_SERVICE_PREFIX"]
    url = urlparse(os.environ["JUPYTERHUB_SERVICE_URL"])
    app = web.Application([(prefix.rstrip("/") + "(/.*)?", Redirect)])
    app.listen(url.port, url.hostname)
    ioloop.IOLoop.current().start()


if __name__ == "__main__":
    main()
