import pytest

from tfspawner import imageref
from tfspawner.imageref import ImageRef, InvalidImageReference

D = "sha256:" + "a" * 64
E = "sha256:" + "b" * 64


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("ubuntu", ImageRef(None, "ubuntu")),
        ("ubuntu:22.04", ImageRef(None, "ubuntu", "22.04")),
        (f"ubuntu@{D}", ImageRef(None, "ubuntu", None, D)),
        (f"ubuntu:22.04@{D}", ImageRef(None, "ubuntu", "22.04", D)),
        (
            "tensorflow/tensorflow:2.9.1-gpu-jupyter",
            ImageRef(None, "tensorflow/tensorflow", "2.9.1-gpu-jupyter"),
        ),
        ("127.0.0.1:5000/x/y", ImageRef("127.0.0.1:5000", "x/y")),
        ("127.0.0.1:5000/x/y:5000", ImageRef("127.0.0.1:5000", "x/y", "5000")),
        (f"127.0.0.1:5000/x/y@{D}", ImageRef("127.0.0.1:5000", "x/y", None, D)),
        (f"127.0.0.1:5000/x/y:t@{D}", ImageRef("127.0.0.1:5000", "x/y", "t", D)),
        ("localhost/a", ImageRef("localhost", "a")),
        ("localhost:5000/a:b", ImageRef("localhost:5000", "a", "b")),
        ("registry.example.edu/a/b/c/d:e", ImageRef("registry.example.edu", "a/b/c/d", "e")),
        ("[::1]:5000/a", ImageRef("[::1]:5000", "a")),
        ("quay.io/jupyter/base-notebook", ImageRef("quay.io", "jupyter/base-notebook")),
        ("a__b/c.d-e---f", ImageRef(None, "a__b/c.d-e---f")),
        ("my-registry:5000/team/img", ImageRef("my-registry:5000", "team/img")),
    ],
)
def test_parse(text, expected):
    assert imageref.parse(text) == expected
    assert str(imageref.parse(text)) == text


@pytest.mark.parametrize(
    "text",
    [
        "",
        " ubuntu",
        "ubuntu ",
        "Ubuntu",
        "UPPER/case",
        "ubuntu:",
        "ubuntu@",
        "ubuntu@sha256:abc",
        f"ubuntu@{D.upper()}",
        "ubuntu@md5:" + "a" * 32,
        f"ubuntu@{D}@{E}",
        "ubuntu:tag:tag",
        "a//b",
        "/a",
        "a/",
        "-a",
        "a..b",
        "a:" + "t" * 129,
        "a" * 256,
        "127.0.0.1:5000/",
        "host:port/a",
        "a;rm -rf /",
        "a\nb",
        "ubuntu:-tag",
        "../etc/passwd",
        "ubuntu\x00",
        "\uff55buntu",  # fullwidth u
    ],
)
def test_parse_rejects(text):
    with pytest.raises(InvalidImageReference):
        imageref.parse(text)


@pytest.mark.parametrize("value", [None, 1, b"ubuntu", ["ubuntu"]])
def test_parse_rejects_non_strings(value):
    with pytest.raises(InvalidImageReference):
        imageref.parse(value)


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("ubuntu", "docker.io/library/ubuntu"),
        ("docker.io/ubuntu", "docker.io/library/ubuntu"),
        ("docker.io/library/ubuntu", "docker.io/library/ubuntu"),
        ("tensorflow/tensorflow", "docker.io/tensorflow/tensorflow"),
        ("127.0.0.1:5000/x", "127.0.0.1:5000/x"),
    ],
)
def test_canonical_name(text, canonical):
    assert imageref.parse(text).canonical_name == canonical


@pytest.mark.parametrize(
    ("pin", "repo_digest", "matches"),
    [
        (f"tensorflow/tensorflow@{D}", f"tensorflow/tensorflow@{D}", True),
        (f"tensorflow/tensorflow:2.9.1@{D}", f"tensorflow/tensorflow@{D}", True),
        (f"docker.io/library/ubuntu@{D}", f"ubuntu@{D}", True),
        (f"127.0.0.1:5000/x/y@{D}", f"127.0.0.1:5000/x/y@{D}", True),
        (f"127.0.0.1:5000/x/y@{D}", f"127.0.0.1:5000/x/y@{E}", False),
        (f"127.0.0.1:5000/x/y@{D}", f"127.0.0.1:5001/x/y@{D}", False),
        (f"127.0.0.1:5000/x/y@{D}", f"x/y@{D}", False),
        ("ubuntu:22.04", f"ubuntu@{D}", False),
        (f"ubuntu@{D}", "not a reference", False),
    ],
)
def test_matches_repo_digest(pin, repo_digest, matches):
    assert imageref.parse(pin).matches_repo_digest(repo_digest) is matches


@pytest.mark.parametrize(
    ("text", "args"),
    [
        (f"127.0.0.1:5000/x/y:t@{D}", ("127.0.0.1:5000/x/y", D)),
        ("127.0.0.1:5000/x/y:t", ("127.0.0.1:5000/x/y", "t")),
        ("127.0.0.1:5000/x/y", ("127.0.0.1:5000/x/y", "latest")),
    ],
)
def test_pull_args_prefer_digest(text, args):
    assert imageref.parse(text).pull_args() == args
