import json
import os

import pytest

from tfspawner import catalogue
from tfspawner.catalogue import CatalogueError

D1, D2, D3 = ("sha256:" + c * 64 for c in "123")
REPO = "registry.example.edu/tf/cpu"
RECIPE = {"base": "tensorflow/tensorflow:2.9.3-jupyter", "repository": REPO}


def built(data, *digests):
    for i, digest in enumerate(digests):
        data = catalogue.add_pin(data, "tf-cpu", f"{REPO}:b{i}@{digest}", None, f"t{i}")
    return data


def test_add_pin_keeps_earlier_pins_and_makes_the_new_one_current():
    data = built(catalogue.empty(), D1, D2)
    assert catalogue.current_pins(data) == {"tf-cpu": f"{REPO}:b1@{D2}"}
    assert [p["image"] for p in data["images"]["tf-cpu"]["pins"]] == [
        f"{REPO}:b0@{D1}",
        f"{REPO}:b1@{D2}",
    ]


def test_rollback_goes_back_one_and_a_rebuild_after_it_is_current():
    data = built(catalogue.empty(), D1, D2)
    back, was, now = catalogue.rollback(data, "tf-cpu")
    assert (was, now) == (f"{REPO}:b1@{D2}", f"{REPO}:b0@{D1}")
    assert catalogue.current_pins(back) == {"tf-cpu": f"{REPO}:b0@{D1}"}
    assert catalogue.current_pins(data) == {"tf-cpu": f"{REPO}:b1@{D2}"}  # not changed in place
    with pytest.raises(CatalogueError, match="no earlier pin"):
        catalogue.rollback(back, "tf-cpu")
    with pytest.raises(CatalogueError, match="no alias 'tf-gpu'"):
        catalogue.rollback(back, "tf-gpu")
    again = catalogue.add_pin(back, "tf-cpu", f"{REPO}:b2@{D3}", None, "t2")
    assert catalogue.current_pins(again) == {"tf-cpu": f"{REPO}:b2@{D3}"}
    assert len(again["images"]["tf-cpu"]["pins"]) == 3


def test_all_pins_marks_the_current_one():
    data, _, _ = catalogue.rollback(built(catalogue.empty(), D1, D2), "tf-cpu")
    assert [current for _, _, current in catalogue.all_pins(data)] == [True, False]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ([], "JSON object"),
        ({"images": {"a": {"pins": [{"image": REPO}]}}}, "not pinned by digest"),
        ({"images": {"a": {"pins": [{"image": "Not Valid"}]}}}, r"pins\[0\]"),
        ({"images": {"a": {"pins": [{"image": f"{REPO}@{D1}"}], "current": 1}}}, "current"),
        ({"images": {"a": {"recipe": {"base": "x"}}}}, "recipe.repository must be set"),
        (
            {"images": {"a": {"recipe": {**RECIPE, "base": f"x@{D1}"}}}},
            "a tag to follow",
        ),
        ({"images": {"a": {"recipe": {**RECIPE, "repository": f"{REPO}:t"}}}}, "without tag"),
        ({"images": {"a": {"recipe": {**RECIPE, "pull": True}}}}, "unknown keys pull"),
        ({"images": {"a": {"recipe": {**RECIPE, "build_args": {"X": 1}}}}}, "build_args"),
    ],
)
def test_malformed_catalogues_are_refused_with_the_place(data, message):
    with pytest.raises(CatalogueError, match=message):
        catalogue.validate(data)


def test_load_and_save(tmp_path):
    path = str(tmp_path / "catalogue.json")
    assert catalogue.load(path) == catalogue.empty()
    with pytest.raises(CatalogueError, match="no such file"):
        catalogue.load(path, missing_ok=False)
    data = catalogue.set_recipe(catalogue.empty(), "tf-cpu", RECIPE)
    data = built(data, D1)
    catalogue.save(path, data)
    assert catalogue.load(path) == data
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["catalogue.json"]
    (tmp_path / "catalogue.json").write_text("{not json")
    with pytest.raises(CatalogueError, match=r"catalogue\.json"):
        catalogue.load(path)
    (tmp_path / "catalogue.json").write_text(json.dumps({"images": {"a": 1}}))
    with pytest.raises(CatalogueError, match=r"images\['a'\] must be an object"):
        catalogue.load(path)


def test_stale_servers():
    pins = {"tf-cpu": f"{REPO}:b1@{D2}"}
    servers = [
        {"user": "old", "server": "", "profile": "cpu", "image": f"{REPO}:b0@{D1}"},
        {"user": "new", "server": "", "profile": "cpu", "image": f"{REPO}@{D2}"},
        {"user": "other", "server": "", "profile": "gpu", "image": f"{REPO}@{D1}"},
        {"user": "gone", "server": "", "profile": "removed", "image": f"{REPO}@{D1}"},
    ]
    stale = catalogue.stale_servers(servers, {"cpu": "tf-cpu", "gpu": "tf-gpu"}, pins)
    assert [(s["user"], s["alias"], s["current"]) for s in stale] == [
        ("old", "tf-cpu", f"{REPO}:b1@{D2}")
    ]


def test_pool_view_lists_stale_servers():
    from tfspawner import gpupool, hub

    pool = gpupool.GPUPool([])
    stale = catalogue.stale_servers(
        [
            {
                "user": "<b>old</b>",
                "server": "",
                "profile": "cpu",
                "image": f"{REPO}:b0@{D1}",
                "since": "2026-11-26T07:00:00+00:00",
                "gpus": [],
                "container": "c",
            }
        ],
        {"cpu": "tf-cpu"},
        {"tf-cpu": f"{REPO}:b1@{D2}"},
    )
    view = hub.gpu_pool_view(pool, "hub", [], stale)
    assert view["stale_images"] == [
        {
            "user": "<b>old</b>",
            "server": "",
            "profile": "cpu",
            "alias": "tf-cpu",
            "image": f"{REPO}:b0@{D1}",
            "current": f"{REPO}:b1@{D2}",
            "since": "2026-11-26T07:00:00+00:00",
        }
    ]
    assert hub.gpu_pool_view(pool, "hub")["stale_images"] == []
