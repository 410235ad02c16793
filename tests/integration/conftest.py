import os

import docker
import pytest

from tests.harness.hubprocess import new_hub

REQUIRED_ENV = ("TFSPAWNER_TEST_IMAGE", "TFSPAWNER_TEST_TF_IMAGE", "TFSPAWNER_TEST_HUB_IP")


def _missing_testbed() -> str | None:
    try:
        docker.from_env(timeout=5).ping()
    except Exception as e:
        return f"no Docker engine answers ({e.__class__.__name__}); run `scripts/testbed up`"
    missing = [name for name in REQUIRED_ENV if not os.environ.get(name)]
    if missing:
        return f"{', '.join(missing)} not set; run `scripts/testbed up` to write .testbed/env"
    return None


def pytest_collection_modifyitems(items):
    for item in items:
        if "/integration/" in str(item.path):
            item.add_marker(pytest.mark.integration)


def pytest_runtest_setup(item):
    if item.get_closest_marker("integration") is None:
        return
    reason = _missing_testbed()
    if reason is None:
        return
    if os.environ.get("TFSPAWNER_REQUIRE_INTEGRATION") == "1":
        pytest.fail(f"integration test cannot run: {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def docker_client():
    client = docker.from_env()
    yield client
    client.close()


@pytest.fixture
def test_image():
    return os.environ["TFSPAWNER_TEST_IMAGE"]


@pytest.fixture
def tf_image():
    return os.environ["TFSPAWNER_TEST_TF_IMAGE"]


@pytest.fixture
def hub_factory(tmp_path, request, docker_client):
    """Start real hubs with extra config; stop them and remove their containers after."""
    hubs = []

    def start(extra_config: str = "", hub_name: str | None = None, run: bool = True):
        hub = new_hub(
            tmp_path / f"hub{len(hubs)}",
            os.environ["TFSPAWNER_TEST_HUB_IP"],
            extra_config,
            hub_name=hub_name,
        )
        hubs.append(hub)
        if run:
            hub.start()
        return hub

    yield start
    failed = getattr(request.node, "rep_call", None) is not None and request.node.rep_call.failed
    for hub in hubs:
        if failed:
            print(f"\n=== hub {hub.hub_name} log ===\n{hub.log_tail()}")
            print(f"=== containers of {hub.hub_name} ===\n{hub.container_logs(docker_client)}")
        hub.stop()
        hub.remove_containers(docker_client)
