"""The options form: a Jinja2 template with autoescape on.

JupyterHub inserts the form into its page unescaped, so everything a profile
or a message contains must be escaped here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import jinja2

from . import limits
from .profiles import Profile

TEMPLATE_DIR = Path(__file__).parent / "templates"
DEFAULT_TEMPLATE = "options_form.html"


@dataclass(frozen=True)
class Choice:
    profile: Profile
    available: bool
    availability: str
    resources: str


def describe_resources(profile: Profile, default_mem, default_cpu) -> str:
    parts = []
    cpu = profile.cpu_limit if profile.cpu_limit is not None else default_cpu
    mem = profile.mem_limit if profile.mem_limit is not None else default_mem
    if cpu:
        parts.append(f"{cpu:g} CPU{'s' if cpu != 1 else ''}")
    if mem:
        parts.append(f"{limits.format_bytes(int(mem))} memory")
    parts.append(
        f"{profile.gpus} GPU{'s' if profile.gpus != 1 else ''}" if profile.gpus else "no GPU"
    )
    return ", ".join(parts)


def choices(
    profiles: list[Profile], *, free_gpus: int, total_gpus: int, default_mem=None, default_cpu=None
) -> list[Choice]:
    result = []
    for profile in profiles:
        if profile.gpus:
            available = free_gpus >= profile.gpus
            availability = f"{free_gpus} of {total_gpus} GPUs free"
        else:
            available, availability = True, ""
        result.append(
            Choice(
                profile,
                available,
                availability,
                describe_resources(profile, default_mem, default_cpu),
            )
        )
    return result


def environment(template_path: str | None = None) -> jinja2.Environment:
    loaders = [jinja2.FileSystemLoader(str(TEMPLATE_DIR))]
    if template_path:
        loaders.insert(0, jinja2.FileSystemLoader(str(Path(template_path).parent)))
    return jinja2.Environment(
        loader=jinja2.ChoiceLoader(loaders),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )


def render(
    options: list[Choice], *, selected: str, notice: str = "", template_path: str | None = None
) -> str:
    name = Path(template_path).name if template_path else DEFAULT_TEMPLATE
    template = environment(template_path).get_template(name)
    # Preselect the last choice if it can still start, else the first that can.
    startable = [c.profile.slug for c in options if c.available]
    if selected not in startable:
        selected = startable[0] if startable else ""
    return template.render(choices=options, selected=selected, notice=notice)
