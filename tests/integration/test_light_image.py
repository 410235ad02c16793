"""The single-user images boot light and still do everything a student needs.

The images install `rfc3987`, so jsonschema's iri checks never import
`rfc3987_syntax`; their bytecode is compiled at build time; only the server
extensions students use are on; JupyterLab makes no network call.
"""

import json
import textwrap
import uuid

import pytest

# Run in the image as root, so that a missing .pyc would be written (and seen
# in the container's diff); prints one JSON object.
CHECK = textwrap.dedent(
    """
    import json, sys
    import jupyterhub.singleuser
    import jupyter_server.serverapp
    for optional in ("jupyterlab", "notebook", "jupyter_server_proxy"):
        try:
            __import__(optional)
        except ImportError:
            pass
    result = {"rfc3987_syntax": "rfc3987_syntax" in sys.modules}

    import jsonschema, nbformat
    from jsonschema import Draft202012Validator

    checker = Draft202012Validator.FORMAT_CHECKER

    def fails(instance, schema, **kwargs):
        try:
            jsonschema.validate(instance, schema, **kwargs)
        except jsonschema.ValidationError:
            return True
        return False

    iri = {"type": "string", "format": "iri"}
    result["iri_valid_passes"] = not fails("https://例え.テスト/パス?q=1", iri, format_checker=checker)
    result["iri_invalid_fails"] = fails("https://exa mple.org/<x>", iri, format_checker=checker)
    result["iri_reference_invalid_fails"] = fails(
        "a b", {"format": "iri-reference"}, format_checker=checker
    )
    result["iri_unchecked_without_format_checking"] = not fails("https://exa mple.org/", iri)

    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("print(1)")])
    nbformat.validate(nb)
    result["notebook_valid"] = True
    bad = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("print(1)")])
    del bad.cells[0]["outputs"]
    try:
        nbformat.validate(bad)
        result["notebook_invalid_fails"] = False
    except nbformat.ValidationError:
        result["notebook_invalid_fails"] = True

    from jupyter_core.paths import jupyter_config_path
    from jupyter_server.extension.config import ExtensionConfigManager

    manager = ExtensionConfigManager(read_config_path=jupyter_config_path())
    result["extensions"] = manager.get_jpserver_extensions()
    print(json.dumps(result))
    """
)


def run_check(docker_client, image: str) -> tuple[dict, list[str]]:
    container = docker_client.containers.run(
        image, ["python3", "-c", CHECK], user="0", detach=True, network_mode="none"
    )
    try:
        status = container.wait(timeout=120)
        logs = container.logs(stdout=True, stderr=False).decode()
        assert status["StatusCode"] == 0, container.logs().decode()
        written = [c["Path"] for c in container.diff() or []]
        return json.loads(logs.strip().splitlines()[-1]), written
    finally:
        container.remove(force=True)


@pytest.fixture(params=["test_image", "tf_image"])
def image(request):
    return request.getfixturevalue(request.param)


def test_light_image_validates_and_skips_rfc3987_syntax(docker_client, image):
    result, written = run_check(docker_client, image)
    assert result.pop("rfc3987_syntax") is False, "rfc3987_syntax was imported"
    extensions = result.pop("extensions")
    assert all(result.values()), result
    # Bytecode was compiled at build time: importing the server wrote none.
    assert [p for p in written if p.endswith(".pyc")] == []
    assert extensions.get("jupyter_lsp", False) is False
    assert all(extensions[n] for n in ("jupyterlab", "notebook") if n in extensions)


async def test_notebook_runs_on_the_light_tf_server(hub_factory, tf_image):
    hub = hub_factory(f"c.TFSpawner.image = {tf_image!r}\n")
    await hub.create_user("student")
    await hub.spawn("student")
    prefix = hub.server_prefix("student")

    cells = [
        {
            "cell_type": "code",
            "source": "x = 6 * 7",
            "metadata": {},
            "outputs": [],
            "execution_count": None,
        },
        {
            "cell_type": "code",
            "source": "print(x)",
            "metadata": {},
            "outputs": [],
            "execution_count": None,
        },
    ]
    notebook = {"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    for cell in cells:
        cell["id"] = uuid.uuid4().hex[:8]
    async with hub.client() as c:
        r = await c.put(
            f"{prefix}/api/contents/light.ipynb", json={"type": "notebook", "content": notebook}
        )
        assert r.status_code == 201, r.text
        r = await c.get(f"{prefix}/api/contents/light.ipynb")
        assert r.status_code == 200 and not r.json().get("message"), r.text
        saved = r.json()["content"]
        # The server still validates what it saves with nbformat: a markdown
        # cell may not carry outputs.
        notebook["cells"].append(
            {"cell_type": "markdown", "id": "md", "source": "", "metadata": {}, "outputs": []}
        )
        r = await c.put(
            f"{prefix}/api/contents/bad.ipynb", json={"type": "notebook", "content": notebook}
        )
        assert "validation failed" in (r.json().get("message") or "").lower(), r.text
        # The news feed is off: no request leaves the server for it.
        r = await c.get(f"{prefix}/lab/api/news")
        assert r.status_code == 200 and r.json()["news"] == [], r.text

    kernel = await hub.start_kernel("student")
    outputs = [
        await hub.run_code("student", cell["source"], kernel_id=kernel) for cell in saved["cells"]
    ]
    assert outputs == ["", "42\n"]
