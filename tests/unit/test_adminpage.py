"""The admin page's templates in a jinja environment made as the hub makes its own."""

import datetime
import json

import jinja2
import pytest
from jupyterhub.app import JupyterHub

from tfspawner import adminpage, adminview, catalogue, gpupool, hub

NOW = datetime.datetime(2026, 11, 26, 7, 30, tzinfo=datetime.timezone.utc)
D1 = "sha256:" + "1" * 64
D2 = "sha256:" + "2" * 64
REPO = "registry.example.edu/tf/cpu"


def hub_env(custom_dir=None) -> jinja2.Environment:
    """The hub's environment (app.init_tornado_settings), with tfspawner's templates in front."""
    base = JupyterHub()._template_paths_default()[0]
    paths = [str(custom_dir), base] if custom_dir else [base]
    loader = jinja2.ChoiceLoader(
        [
            jinja2.PrefixLoader({"templates": jinja2.FileSystemLoader([base])}, "/"),
            jinja2.FileSystemLoader(paths),
        ]
    )
    env = jinja2.Environment(loader=loader, autoescape=True)
    settings = {"jinja2_env": env}
    adminpage.install_templates(settings)
    adminpage.install_templates(settings)  # once only
    return env


class Spawner:
    options_form = None


class User:
    def __init__(self, name):
        self.name = name
        self.json_escaped_name = json.dumps(name)[1:-1]
        self.spawner = Spawner()


def namespace(scopes, name="admin") -> dict:
    return {
        "base_url": "/hub/",
        "prefix": "/",
        "user": User(name),
        "login_url": "/hub/login",
        "logout_url": "/hub/logout",
        "static_url": lambda path, **kw: f"/hub/static/{path}",
        "version_hash": "",
        "services": [],
        "parsed_scopes": dict.fromkeys(scopes),
        "expanded_scopes": set(scopes),
        "xsrf": "XSRF",
        "xsrf_token": "XSRF",
    }


ADMIN = ["admin-ui", "read:servers", "admin:servers"]
STUDENT = ["read:servers!user=student", "servers!user=student"]


def view() -> dict:
    return {
        "total": 3,
        "free": 1,
        "hub_name": "hub",
        "generated": NOW.isoformat(),
        "gpus": [
            {
                "id": "0",
                "name": "A100",
                "memory": "80GB",
                "uuid": "",
                "held_by": {
                    "user": "<b>eve</b>",
                    "server": "",
                    "profile": "gpu",
                    "since": "2026-11-26T07:00:00+00:00",
                    "hub": "hub",
                    "known_to_hub": True,
                },
            },
            {
                "id": "1",
                "name": "A100",
                "memory": "80GB",
                "uuid": "",
                "held_by": {
                    "user": "lost",
                    "server": "x",
                    "profile": "gpu",
                    "since": "2026-11-26T06:00:00+00:00",
                    "hub": "hub",
                    "container": "c1",
                    "known_to_hub": False,
                },
            },
            {"id": "2", "name": "A100", "memory": "80GB", "uuid": "", "held_by": None},
        ],
        "not_known_to_hub": [
            {
                "user": "lost",
                "server": "<i>x</i>",
                "gpus": ["1"],
                "profile": "gpu",
                "container": "c1",
                "id": "abc",
                "since": "2026-11-26T06:00:00+00:00",
            }
        ],
        "stale_images": [],
        "images": {"aliases": [], "catalogue_file": "", "last_rebuilt": None, "error": ""},
    }


def render(env, data, scopes=ADMIN) -> str:
    template = env.get_template("tfspawner/admin.html")
    return template.render(
        view=data,
        page=adminpage.present(data),
        message="",
        may_remove="admin:servers" in scopes,
        tfspawner_page=True,
        **namespace(scopes),
    )


def test_page_has_the_hubs_navigation_and_escapes_names():
    page = render(hub_env(), view())
    assert 'id="dark-theme-toggle"' in page and 'href="/hub/token"' in page
    assert 'id="tfspawner-nav"' in page and 'aria-current="page"' in page
    assert '<p id="summary">1 of 3 GPUs free.</p>' in page
    assert "&lt;b&gt;eve&lt;/b&gt;" in page and "<b>eve" not in page
    assert "2026-11-26 07:00 UTC (30 min)" in page
    assert '<td class="free">free</td>' in page
    # This hub's own lost server does not name the hub.
    assert '<td class="held">held, not known to the hub</td>' in page
    assert "&lt;i&gt;x&lt;/i&gt;" in page
    # The remove link carries the names URL-encoded, and only asks (GET).
    assert 'href="/hub/tfspawner/remove?user=lost&amp;server=%3Ci%3Ex%3C%2Fi%3E"' in page
    assert "No boot queue on this hub" in page
    assert 'id="tfspawner-queue"\n             hidden' in page
    # Without admin:servers, no remove button.
    assert "tfspawner/remove?" not in render(hub_env(), view(), ["admin-ui", "read:servers"])


def test_nav_link_only_for_those_who_may_open_the_page():
    env = hub_env()
    for scopes, shown in [
        (ADMIN, True),
        (STUDENT, False),
        (["admin-ui"], False),
        (["admin-ui", "read:servers!user=x"], False),
        (["admin-ui", "read:servers"], True),
    ]:
        page = env.get_template("home.html").render(**namespace(scopes), default_server=None)
        assert ('id="tfspawner-nav"' in page) is shown, scopes


def test_an_admins_own_page_html_is_kept(tmp_path):
    (tmp_path / "page.html").write_text(
        '{% extends "templates/page.html" %}'
        "{% block nav_bar_left_items %}{{ super() }}<li>Course wiki</li>{% endblock %}"
    )
    page = render(hub_env(tmp_path), view())
    assert "<li>Course wiki</li>" in page and 'id="tfspawner-nav"' in page


def test_boot_queue_places_and_median():
    data = view()
    data["boot_queue"] = {
        "slots": 2,
        "length": 2,
        "median_boot_s": 41.6,
        "booting": [{"label": "ann", "since": "2026-11-26T07:29:00+00:00", "elapsed_s": 60}],
        "waiting": [
            {
                "label": "<b>bob</b>",
                "place": 1,
                "since": "2026-11-26T07:29:30+00:00",
                "waited_s": 30,
                "estimate_s": 45,
            },
            {"label": "cy", "place": 2, "since": NOW.timestamp() - 60, "waited_s": 0.2},
        ],
    }
    shown = adminpage.present(data)["queue"]
    assert shown["summary"] == "2 waiting; 1 of 2 boot slots in use; median boot time 42 s."
    assert [(r["place"], r["label"], r["waited"], r["estimate"]) for r in shown["rows"]] == [
        ("booting", "ann", "1 min 0 s", ""),
        (1, "<b>bob</b>", "30 s", "45 s"),
        (2, "cy", "0 s", ""),
    ]
    assert shown["rows"][2]["since"] == "2026-11-26 07:29 UTC (1 min)"
    page = render(hub_env(), data)
    assert (
        "&lt;b&gt;bob&lt;/b&gt;" in page and 'id="tfspawner-queue"\n             hidden' not in page
    )


def test_node_column_only_when_the_data_has_nodes():
    data = view()
    assert adminpage.present(data)["nodes"] is False
    for gpu in data["gpus"]:
        gpu["node"] = "node-a"
    page = render(hub_env(), data)
    assert '<th scope="col">Node</th>' in page and "<td>node-a</td>" in page


def test_images_and_stale_servers(tmp_path):
    path = tmp_path / "catalogue.json"
    data = catalogue.add_pin(
        catalogue.empty(), "tf-cpu", f"{REPO}:b0@{D1}", None, "2026-10-01T03:00:00Z"
    )
    data = catalogue.add_pin(data, "tf-cpu", f"{REPO}:b1@{D2}", None, "2026-11-01T03:00:00Z")
    catalogue.save(str(path), data)
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
    refs = {"tf-cpu": f"{REPO}:b1@{D2}", "tf-gpu": f"{REPO}-gpu@{D1}"}
    images = adminview.images_view(refs, stale, str(path))
    assert images["last_rebuilt"] == "2026-11-01T03:00:00Z"
    assert images["aliases"] == [
        {
            "alias": "tf-cpu",
            "image": f"{REPO}:b1@{D2}",
            "repository": f"{REPO}:b1",
            "digest": D2,
            "source": "catalogue",
            "built": "2026-11-01T03:00:00Z",
            "pins_kept": 2,
            "stale": 1,
        },
        {
            "alias": "tf-gpu",
            "image": f"{REPO}-gpu@{D1}",
            "repository": f"{REPO}-gpu",
            "digest": D1,
            "source": "config",
            "built": None,
            "pins_kept": 0,
            "stale": 0,
        },
    ]
    pool = hub.gpu_pool_view(gpupool.GPUPool([]), "hub", [], stale)
    pool["images"] = images
    page = render(hub_env(), pool)
    assert "The image catalogue was last rebuilt 2026-11-01 03:00 UTC." in page
    assert "&lt;b&gt;old&lt;/b&gt;" in page and 'id="stale-images"\n             hidden' not in page
    assert "in TFSpawner.images" in page
    assert 'id="stale-images"\n             hidden' in render(hub_env(), view())


@pytest.mark.parametrize(
    ("seconds", "text"), [(None, ""), (0, "0 s"), (59.4, "59 s"), (61, "1 min 1 s")]
)
def test_duration(seconds, text):
    assert adminpage.duration(seconds) == text
