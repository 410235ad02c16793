# Local development hub: dummy authentication, the test bed's images.
# Not for production: anyone can log in with any password.
import os

c = get_config()  # noqa: F821

c.JupyterHub.spawner_class = "tfspawner"
c.JupyterHub.authenticator_class = "dummy"
c.Authenticator.allow_all = True
c.Authenticator.admin_users = {"admin"}
c.JupyterHub.ip = "127.0.0.1"
c.JupyterHub.port = int(os.environ.get("TFSPAWNER_DEV_PORT", "8000"))
# Containers on the default bridge reach the hub through the bridge gateway.
c.JupyterHub.hub_ip = os.environ["TFSPAWNER_TEST_HUB_IP"]
c.JupyterHub.allow_named_servers = True
c.TFSpawner.image = os.environ["TFSPAWNER_TEST_TF_IMAGE"]
c.TFSpawner.hub_name = "dev"
c.Spawner.start_timeout = 180
