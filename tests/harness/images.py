"""Images pushed to the loopback registry for pull tests."""

import io

REPO = "127.0.0.1:5000/tfspawner-test/pulltest"


def push_variant(docker_client, base: str, tag: str, marker: str) -> tuple[str, str]:
    """Build a tiny image FROM base with a marker label, push it as REPO:tag.

    Returns (pinned reference, image id). Only a small config layer is new, so
    pulls are quick but real.
    """
    dockerfile = f"FROM {base}\nLABEL tfspawner.test.marker={marker}\n"
    image, _ = docker_client.images.build(
        fileobj=io.BytesIO(dockerfile.encode()), tag=f"{REPO}:{tag}", rm=True
    )
    for line in docker_client.images.push(REPO, tag=tag, stream=True, decode=True):
        assert "error" not in line, line
    image.reload()
    [digest] = [d for d in image.attrs["RepoDigests"] if d.startswith(f"{REPO}@")]
    return digest, image.id


def remove_local(docker_client, image_id: str) -> None:
    docker_client.images.remove(image_id, force=True)
    assert not any(i.id == image_id for i in docker_client.images.list())
