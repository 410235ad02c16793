import pytest

from tfspawner import cli, imagecycle


@pytest.mark.parametrize(
    ("user", "root"),
    [
        ("", True),
        ("root", True),
        ("0", True),
        ("0:100", True),
        ("root:root", True),
        ("1000:100", False),
        ("65534:100", False),
        ("jovyan", False),
    ],
)
def test_runs_as_root(user, root):
    assert imagecycle.runs_as_root(user) is root


def test_recipe_needs_a_catalogue_and_a_dockerfile(tmp_path, capsys):
    config = tmp_path / "jupyterhub_config.py"
    config.write_text("c = get_config()\n")
    argv = ["images", "recipe", "x", "--base", "b:1", "--repository", "r.example.edu/x"]
    assert cli.main([*argv, "-f", str(config)]) == 1
    assert "sets no TFSpawner.image_catalogue_file" in capsys.readouterr().err
    path = tmp_path / "catalogue.json"
    context = ["--catalogue", str(path), "--context", str(tmp_path)]
    assert cli.main([*argv, *context]) == 1
    assert f"no Dockerfile in {tmp_path}" in capsys.readouterr().err
    (tmp_path / "Dockerfile").write_text("ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\n")
    assert cli.main([*argv, *context, "--build-arg", "PIP_INSTALL_ARGS=--no-index"]) == 0
    assert cli.main([*argv, *context, "--build-arg", "novalue"]) == 1
    assert "use NAME=VALUE" in capsys.readouterr().err
    assert cli.main(["images", "rollback", "--catalogue", str(path)]) == 1
    assert "no alias" in capsys.readouterr().err


def test_rebuild_without_recipes_and_verify_without_pins(tmp_path, capsys):
    path = tmp_path / "catalogue.json"
    assert cli.main(["images", "rebuild", "--catalogue", str(path)]) == 1
    assert "no such file" in capsys.readouterr().err
    path.write_text('{"images": {}}')
    assert cli.main(["images", "rebuild", "--catalogue", str(path)]) == 1
    assert "has no recipes" in capsys.readouterr().err
    assert cli.main(["images", "verify", "--catalogue", str(path)]) == 1
    assert "no pins to verify" in capsys.readouterr().err
