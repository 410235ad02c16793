import html.parser

import pytest

from tfspawner import form, profiles

RAW = [
    {
        "slug": "cpu",
        "display_name": "CPU <b>only</b>",
        "image": "tf",
        "default": True,
        "mem_limit": "4G",
        "cpu_limit": 2,
    },
    {
        "slug": "gpu",
        "display_name": "<script>alert(1)</script>",
        "description": '"quoted" & <i>',
        "image": "tf",
        "gpus": 1,
    },
    {"slug": "gpu2", "display_name": "Two GPUs", "image": "tf", "gpus": 2},
]


class Inputs(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.inputs, self.labels, self.scripts = [], {}, 0

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "input":
            self.inputs.append(attrs)
        if tag == "label":
            self.labels[attrs["for"]] = True
        if tag == "script":
            self.scripts += 1


def render(free=1, total=2, selected="", notice=""):
    checked = profiles.validate_profiles(RAW, {"tf"})
    choices = form.choices(checked, free_gpus=free, total_gpus=total)
    return form.render(choices, selected=selected, notice=notice)


def parse(text):
    parser = Inputs()
    parser.feed(text)
    return parser


def test_markup_in_profiles_and_notices_renders_as_text():
    text = render(notice="<img src=x onerror=alert(1)>")
    parsed = parse(text)
    assert parsed.scripts == 0
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert "CPU &lt;b&gt;only&lt;/b&gt;" in text
    assert "&#34;quoted&#34; &amp; &lt;i&gt;" in text
    assert "&lt;img src=x onerror=alert(1)&gt;" in text


def test_every_choice_is_a_labelled_radio():
    parsed = parse(render())
    assert [i["value"] for i in parsed.inputs] == ["cpu", "gpu", "gpu2"]
    for i in parsed.inputs:
        assert i["type"] == "radio" and i["name"] == "profile"
        assert i["id"] in parsed.labels
        assert "aria-describedby" in i


@pytest.mark.parametrize(
    ("free", "selected", "disabled", "checked"),
    [
        (2, "", [], "cpu"),
        (1, "gpu", ["gpu2"], "gpu"),
        (1, "gpu2", ["gpu2"], "cpu"),
        (0, "gpu", ["gpu", "gpu2"], "cpu"),
    ],
)
def test_availability_disables_and_preselects(free, selected, disabled, checked):
    text = render(free=free, selected=selected or "cpu")
    parsed = parse(text)
    assert [i["value"] for i in parsed.inputs if "disabled" in i] == disabled
    assert [i["value"] for i in parsed.inputs if "checked" in i] == [checked]
    assert f"{free} of 2 GPUs free" in text


def test_resources_are_described():
    text = render()
    assert "2 CPUs, 4G memory, no GPU" in text
    assert "1 GPU" in text


def test_custom_template(tmp_path):
    template = tmp_path / "mine.html"
    template.write_text("{% for c in choices %}[{{ c.profile.display_name }}]{% endfor %}")
    checked = profiles.validate_profiles(RAW[:1], {"tf"})
    out = form.render(
        form.choices(checked, free_gpus=0, total_gpus=0),
        selected="cpu",
        template_path=str(template),
    )
    assert out == "[CPU &lt;b&gt;only&lt;/b&gt;]"
