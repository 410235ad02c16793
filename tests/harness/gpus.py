"""GPU hubs and what the engine says each user holds."""

from tfspawner import containerspec

from .hubprocess import Hub


def gpu_config(image: str, pool=("0", "1", "2"), extra: str = "") -> str:
    profiles = [
        {"slug": "cpu", "display_name": "CPU", "image": "small", "default": True},
        {"slug": "gpu", "display_name": "1 GPU", "image": "small", "gpus": 1},
    ]
    return (
        f"c.TFSpawner.images = {{'small': {image!r}}}\n"
        "c.TFSpawner.notebook_dir = '/home/jovyan'\n"
        f"c.TFSpawner.profiles = {profiles!r}\n"
        f"c.TFSpawner.gpu_pool = {list(pool)!r}\n" + extra
    )


async def pool_view(hub: Hub) -> dict:
    async with hub.client() as c:
        r = await c.get("/hub/api/tfspawner/gpus")
    assert r.status_code == 200, r.text
    return r.json()


def holders(view: dict) -> dict:
    return {g["id"]: g["held_by"]["user"] for g in view["gpus"] if g["held_by"]}


def engine_gpus(hub: Hub, docker_client) -> dict:
    """user -> GPU ids, read back from the engine: DeviceRequests, env and labels must agree."""
    result = {}
    for container in hub.containers(docker_client):
        container.reload()
        if container.status != "running":
            continue
        attrs = container.attrs
        env = dict(e.split("=", 1) for e in attrs["Config"]["Env"])
        labels = attrs["Config"]["Labels"]
        requests = attrs["HostConfig"]["DeviceRequests"] or []
        ids = [i for r in requests for i in r["DeviceIDs"]]
        if not ids:
            assert env["NVIDIA_VISIBLE_DEVICES"] == "void"
            continue
        assert requests[0]["Capabilities"] == [["gpu"]]
        assert requests[0]["Count"] == 0
        assert env["NVIDIA_VISIBLE_DEVICES"] == ",".join(ids)
        assert containerspec.gpus_from_labels(labels) == ids
        result[labels[containerspec.LABEL_USER]] = ids
    return result
