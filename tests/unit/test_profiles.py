import pytest

from tfspawner import limits, profiles
from tfspawner.profiles import OptionsError, ProfileError

IMAGES = {"tf-cpu", "tf-gpu"}
RAW = [
    {"slug": "cpu", "display_name": "CPU", "image": "tf-cpu", "default": True},
    {"slug": "gpu", "display_name": "1 GPU", "image": "tf-gpu", "gpus": 1, "mem_limit": "8G"},
    {"slug": "lab", "display_name": "Lab", "image": "tf-gpu", "gpus": 2, "groups": ["lab"]},
]


def checked():
    return profiles.validate_profiles(RAW, IMAGES)


def test_validate_profiles():
    cpu, gpu, lab = checked()
    assert cpu.default and cpu.gpus == 0
    assert gpu.mem_limit == 8 * 1024**3
    assert lab.groups == ("lab",)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ([{"display_name": "x", "image": "tf-cpu"}], "profile #1: missing required key 'slug'"),
        ([{"slug": "x", "image": "tf-cpu"}], "profile 'x': missing required key 'display_name'"),
        (
            [{"slug": "x", "display_name": "X", "image": "nope"}],
            "profile 'x': 'image' 'nope' is not an alias",
        ),
        (
            [{"slug": "X", "display_name": "X", "image": "tf-cpu"}],
            "profile 'X': 'slug' must be lowercase",
        ),
        (
            [{"slug": "x", "display_name": "X", "image": "tf-cpu", "gpus": "1"}],
            "profile 'x': 'gpus' has the wrong type",
        ),
        (
            [{"slug": "x", "display_name": "X", "image": "tf-cpu", "gpus": True}],
            "'gpus' has the wrong type",
        ),
        (
            [{"slug": "x", "display_name": "X", "image": "tf-cpu", "gpus": -1}],
            "'gpus' must be 0 or more",
        ),
        (
            [{"slug": "x", "display_name": "X", "image": "tf-cpu", "mem_limit": "lots"}],
            "profile 'x': 'lots' is not a size",
        ),
        (
            [{"slug": "x", "display_name": "X", "image": "tf-cpu", "cpu_limit": 0}],
            "profile 'x': 0 is not a CPU count",
        ),
        ([{"slug": "x", "display_name": "X", "image": "tf-cpu", "colour": 1}], "unknown key"),
        (
            [{"slug": "x", "display_name": "X", "image": "tf-cpu", "groups": [""]}],
            "'groups' must be a list",
        ),
        ([RAW[0], RAW[0]], "'slug' is used by another profile"),
        ([RAW[0], {**RAW[1], "default": True}], "more than one profile"),
        (["cpu"], "profile #1 must be a dict"),
        ([{**RAW[0], "datasets": [{"source": "x"}]}], "each of 'datasets' must be"),
        ([{**RAW[0], "datasets": [{"source": "x", "target": "data"}]}], "must be an absolute path"),
        (
            [{**RAW[0], "datasets": [{"source": "x", "target": "/a/../etc"}]}],
            "must be an absolute path",
        ),
        (
            [{**RAW[0], "datasets": [{"source": "../x", "target": "/data"}]}],
            "must be a volume name or an absolute host path",
        ),
    ],
)
def test_validate_profiles_refuses(raw, message):
    with pytest.raises(ProfileError, match=message):
        profiles.validate_profiles(raw, IMAGES)


@pytest.mark.parametrize(
    ("options", "groups", "admin", "slug"),
    [
        ({}, [], False, "cpu"),
        ({"profile": "gpu"}, [], False, "gpu"),
        ({"profile": "lab"}, ["lab"], False, "lab"),
        ({"profile": "lab"}, [], True, "lab"),
    ],
)
def test_validate_user_options(options, groups, admin, slug):
    profile = profiles.validate_user_options(options, checked(), groups=groups, is_admin=admin)
    assert profile.slug == slug


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"image": "evil/root"}, "Unknown server option\\(s\\): image"),
        ({"profile": "cpu", "mem_limit": "1T"}, "Unknown server option"),
        ({"profile": 1}, "must be given as text"),
        ({"profile": ["cpu"]}, "must be given as text"),
        ({"profile": "lab"}, "not allowed to use the profile 'lab'"),
        ({"profile": "nope"}, "no profile called 'nope'. Choose one of: cpu, gpu"),
        ([], "must be a JSON object"),
        ("cpu", "must be a JSON object"),
    ],
)
def test_validate_user_options_refuses(options, message):
    with pytest.raises(OptionsError, match=message):
        profiles.validate_user_options(options, checked(), groups=[], is_admin=False)


def test_datasets():
    [profile] = profiles.validate_profiles(
        [
            {
                **RAW[0],
                "datasets": [
                    {"source": "course-2026", "target": "/data"},
                    {"source": "/srv/share", "target": "/share"},
                ],
            }
        ],
        IMAGES,
    )
    assert [(d.source, d.target) for d in profile.datasets] == [
        ("course-2026", "/data"),
        ("/srv/share", "/share"),
    ]


@pytest.mark.parametrize(
    ("last", "slug"), [("gpu", "gpu"), ("lab", "cpu"), ("gone", "cpu"), ("", "cpu")]
)
def test_empty_options_reuse_the_last_allowed_profile(last, slug):
    chosen = profiles.validate_user_options({}, checked(), groups=[], is_admin=False, last=last)
    assert chosen.slug == slug


def test_default_falls_back_to_an_allowed_profile():
    only_lab_default = profiles.validate_profiles([{**RAW[2], "default": True}, RAW[1]], IMAGES)
    assert (
        profiles.validate_user_options({}, only_lab_default, groups=[], is_admin=False).slug
        == "gpu"
    )


@pytest.mark.parametrize(
    ("formdata", "options"),
    [
        ({"profile": ["gpu"]}, {"profile": "gpu"}),
        ({}, {}),
        ({"x": ["1"]}, {"x": "1"}),
        ({"profile": ["gpu"], "_xsrf": ["token"]}, {"profile": "gpu"}),
    ],
)
def test_options_from_form(formdata, options):
    assert profiles.options_from_form(formdata) == options


def test_options_from_form_refuses_repeated_fields():
    with pytest.raises(OptionsError, match="exactly one value"):
        profiles.options_from_form({"profile": ["cpu", "gpu"]})


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("512M", 512 * 1024**2),
        ("4G", 4 * 1024**3),
        ("1.5G", int(1.5 * 1024**3)),
        ("2GiB", 2 * 1024**3),
        ("100", 100),
        (1024, 1024),
        ("8g", 8 * 1024**3),
    ],
)
def test_parse_bytes(text, size):
    assert limits.parse_bytes(text) == size


@pytest.mark.parametrize("text", ["", "G", "-1G", "0", 0, "4X", "four", True, None, 1.5])
def test_parse_bytes_refuses(text):
    with pytest.raises(ValueError):
        limits.parse_bytes(text)


@pytest.mark.parametrize(
    ("size", "text"), [(4 * 1024**3, "4G"), (512 * 1024**2, "512M"), (1000, "1000")]
)
def test_format_bytes(size, text):
    assert limits.format_bytes(size) == text


@pytest.mark.parametrize(
    "options",
    [
        {"k" * 1_000_000: 1},
        {f"key{i}": 1 for i in range(100)},
        {"profile": "p" * 100_000},
    ],
)
def test_refusals_echo_little_of_hostile_options(options):
    with pytest.raises(OptionsError) as refused:
        profiles.validate_user_options(options, checked(), groups=[], is_admin=False)
    assert len(str(refused.value)) < 400
