"""A hub with CPU, GPU and group-only profiles."""

PROFILES = [
    {"slug": "cpu", "display_name": "CPU", "image": "img", "default": True},
    {"slug": "gpu", "display_name": "GPU", "image": "img", "gpus": 1},
    {"slug": "lab", "display_name": "Lab", "image": "img", "gpus": 1, "groups": ["lab"]},
]


def options_config(image: str) -> str:
    return (
        f"c.TFSpawner.images = {{'img': {image!r}}}\n"
        f"c.TFSpawner.profiles = {PROFILES!r}\n"
        "c.TFSpawner.gpu_pool = ['0', '1']\n"
        "c.TFSpawner.notebook_dir = '/home/jovyan'\n"
    )
