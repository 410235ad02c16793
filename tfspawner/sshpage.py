"""The hub page /hub/ssh-config: the ~/.ssh/config block for the logged-in user."""

from __future__ import annotations

from html import escape

from jupyterhub.handlers import BaseHandler
from jupyterhub.utils import get_browser_protocol
from tornado import web

from . import sshproxy

PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>SSH into your server</title>
<style>body{{font-family:sans-serif;max-width:60em;margin:2em auto}}
pre{{background:#f4f4f4;padding:1em;overflow-x:auto}}</style></head>
<body><h1>SSH into your server</h1>
<ol>
<li>Install the proxy command: <code>pip install tfspawner</code>, or save
<a href="{hub}/hub/ssh-config/sshproxy.py" download>sshproxy.py</a> (Python 3, nothing else)
and put <code>python3 /path/to/sshproxy.py ssh-proxy</code> in place of
<code>tfspawner ssh-proxy</code> below.</li>
<li>Make a token on the <a href="{hub}/hub/token">Token page</a> and save it:
<pre>mkdir -p ~/.config/tfspawner &amp;&amp; (umask 077 &amp;&amp; cat &gt; ~/.config/tfspawner/hub-token)</pre></li>
<li>Add this to <code>~/.ssh/config</code>:
<pre>{blocks}</pre></li>
</ol>
<p>A stopped server is started with its last profile when you connect.</p>
</body></html>
"""


class SSHConfigHandler(BaseHandler):
    @web.authenticated
    def get(self):
        user = self.current_user
        public = self.settings.get("public_url")
        if public:
            origin = f"{public.scheme}://{public.netloc}"
        else:
            origin = f"{get_browser_protocol(self.request)}://{self.request.host}"
        hub = origin + self.base_url.rstrip("/")
        servers = ["", *sorted(name for name in user.orm_user.orm_spawners if name)]
        blocks = "\n".join(sshproxy.ssh_config(hub, user.name, server) for server in servers)
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.finish(PAGE.format(hub=escape(hub), blocks=escape(blocks)))


class SSHProxyScriptHandler(BaseHandler):
    """sshproxy.py itself, for users without the tfspawner package."""

    @web.authenticated
    def get(self):
        self.set_header("Content-Type", "text/x-python; charset=utf-8")
        self.set_header("Content-Disposition", 'attachment; filename="sshproxy.py"')
        with open(sshproxy.__file__, "rb") as f:
            self.finish(f.read())


# For c.JupyterHub.extra_handlers (under /hub/).
HANDLERS = [
    (r"/ssh-config", SSHConfigHandler),
    (r"/ssh-config/sshproxy\.py", SSHProxyScriptHandler),
]
