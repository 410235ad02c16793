import base64
import json

import pytest

from tfspawner import imageref, registryauth


@pytest.mark.parametrize(
    ("reference", "registry"),
    [
        ("tensorflow/tensorflow:2.9.3-jupyter", "docker.io"),
        ("python", "docker.io"),
        ("127.0.0.1:5443/tf/cpu@sha256:" + "a" * 64, "127.0.0.1:5443"),
        ("registry.example.edu/tf/2.9-jupyterhub:x", "registry.example.edu"),
        ("localhost/x", "localhost"),
    ],
)
def test_registry_of(reference, registry):
    assert registryauth.registry_of(imageref.parse(reference)) == registry


def write_config(tmp_path, monkeypatch, content: dict) -> None:
    (tmp_path / "config.json").write_text(json.dumps(content))
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))


def test_auths_entry_is_found_and_kept_out_of_repr(tmp_path, monkeypatch):
    token = base64.b64encode(b"robot$tf:s3cret-pw").decode()
    write_config(tmp_path, monkeypatch, {"auths": {"https://harbor.example.edu": {"auth": token}}})
    creds = registryauth.lookup("harbor.example.edu")
    assert creds.found
    assert creds.auth_config["username"] == "robot$tf"
    assert creds.source == str(tmp_path / "config.json")
    assert "s3cret-pw" not in repr(creds)
    assert registryauth.redact(f"denied for s3cret-pw or {token}", creds) == "denied for *** or ***"


def test_no_entry_for_the_registry_is_an_anonymous_pull(tmp_path, monkeypatch):
    write_config(tmp_path, monkeypatch, {"auths": {"other.example.edu": {"auth": "eDp5"}}})
    creds = registryauth.lookup("harbor.example.edu")
    assert not creds.found and creds.auth_config == {}
    assert creds.source.startswith("no login for harbor.example.edu in ")


def test_no_config_file(tmp_path, monkeypatch):
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "absent"))
    monkeypatch.setenv("HOME", str(tmp_path))
    creds = registryauth.lookup("harbor.example.edu")
    assert not creds.found and creds.source == "no Docker config file"


def helper(tmp_path, monkeypatch, script: str) -> None:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    path = bindir / "docker-credential-site"
    path.write_text("#!/bin/sh\n" + script)
    path.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}:/usr/bin:/bin")


def test_a_credential_helper_is_run(tmp_path, monkeypatch):
    helper(
        tmp_path,
        monkeypatch,
        'read server\necho \'{"ServerURL": "\'$server\'", "Username": "u", "Secret": "helper-pw"}\'\n',
    )
    write_config(tmp_path, monkeypatch, {"credHelpers": {"harbor.example.edu": "site"}})
    creds = registryauth.lookup("harbor.example.edu")
    assert creds.auth_config["Password"] == "helper-pw"
    assert creds.source == "credential helper docker-credential-site"
    assert registryauth.redact("x helper-pw y", creds) == "x *** y"


def test_a_failing_credential_helper_names_itself(tmp_path, monkeypatch):
    helper(tmp_path, monkeypatch, "echo 'vault sealed' >&2; exit 1\n")
    write_config(tmp_path, monkeypatch, {"credsStore": "site"})
    with pytest.raises(registryauth.CredentialError, match="docker-credential-site failed"):
        registryauth.lookup("harbor.example.edu")


@pytest.mark.parametrize(
    ("text", "refused"),
    [
        ('Get "https://r/v2/x/manifests/sha256:1": no basic auth credentials', True),
        ("unauthorized: authentication required", True),
        ("denied: requested access to the resource is denied", True),
        ("manifest for r/x@sha256:1 not found: manifest unknown: manifest unknown", False),
        ("dial tcp 127.0.0.1:5443: connect: connection refused", False),
    ],
)
def test_refused(text, refused):
    assert registryauth.refused(text) is refused
