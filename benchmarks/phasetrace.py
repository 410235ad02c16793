"""Phase timings from inside a hub, for `login_storm.py --trace`.

Loaded by the hub's config file. It wraps, on the classes and without
changing what they do:

- every engine call made through DockerSpawner's ``docker()`` seam, recording
  how long it waited for the spawner's executor thread and how long it ran;
- the spawn phases (``start``, ``pull_image``, volume set-up, passwd write,
  container creation, the hub's wait for the server's HTTP port, the proxy).

Each event is one JSON line in the file given to ``install``; ``summarize``
turns a file into a table of mean and p95 durations per phase.
"""

from __future__ import annotations

import functools
import json
import math
import threading
import time
from collections import defaultdict

_lock = threading.Lock()
_out = None


def _emit(**event) -> None:
    line = json.dumps(event) + "\n"
    with _lock:
        _out.write(line)
        _out.flush()


def _user_of(obj) -> str:
    user = getattr(obj, "user", None)
    name = getattr(user, "name", None) or getattr(obj, "name", "")
    return name if isinstance(name, str) else ""


def _wrap_async(cls, attr: str, phase: str, user_of=_user_of) -> None:
    original = getattr(cls, attr)

    @functools.wraps(original)
    async def timed(self, *args, **kwargs):
        started = time.monotonic()
        ok = False
        try:
            result = await original(self, *args, **kwargs)
            ok = True
            return result
        finally:
            _emit(
                kind="phase",
                phase=phase,
                user=user_of(self),
                start=started,
                seconds=time.monotonic() - started,
                ok=ok,
            )

    setattr(cls, attr, timed)


def install(path: str) -> None:
    global _out
    if _out is not None:
        return
    _out = open(path, "a")  # noqa: SIM115 - lives as long as the hub

    import asyncio

    from dockerspawner import DockerSpawner
    from jupyterhub.objects import Server
    from jupyterhub.proxy import Proxy
    from jupyterhub.user import User

    def docker(self, method, *args, **kwargs):
        submitted = time.monotonic()
        user = _user_of(self)

        def run():
            began = time.monotonic()
            try:
                return self._docker(method, *args, **kwargs)
            finally:
                _emit(
                    kind="docker",
                    phase=f"docker {method}",
                    user=user,
                    start=submitted,
                    queued=began - submitted,
                    seconds=time.monotonic() - began,
                )

        return asyncio.wrap_future(self.executor.submit(run))

    DockerSpawner.docker = docker
    _wrap_async(User, "spawn", "hub: User.spawn (start + wait_up + state)", lambda u: u.name)
    _wrap_async(Server, "wait_up", "hub: wait for the server's HTTP port", lambda s: "")
    _wrap_async(Proxy, "add_user", "hub: proxy add_user", lambda p: "")
    _wrap_async(DockerSpawner, "start", "DockerSpawner.start")
    _wrap_async(DockerSpawner, "create_object", "create_object")
    _wrap_async(DockerSpawner, "pull_image", "pull_image")
    try:
        from tfspawner.spawner import TFSpawner
    except ImportError:
        return
    from tfspawner.engine import DockerEngine

    def engine_call(self, method, *args, **kwargs):
        submitted = time.monotonic()
        function = getattr(self.client, method)

        def run():
            began = time.monotonic()
            try:
                return function(*args, **kwargs)
            finally:
                _emit(
                    kind="docker",
                    phase=f"docker {method}",
                    user="",
                    start=submitted,
                    queued=began - submitted,
                    seconds=time.monotonic() - began,
                )

        return asyncio.wrap_future(self.executor.submit(run))

    # TFSpawner's engine calls, its base class's included, all go through its engine.
    DockerEngine.call = engine_call
    _wrap_async(TFSpawner, "start", "TFSpawner.start")
    # TFSpawner overrides these without calling DockerSpawner's.
    _wrap_async(TFSpawner, "pull_image", "pull_image")
    _wrap_async(TFSpawner, "create_object", "create_object")
    _wrap_async(TFSpawner, "_prepare_storage", "TFSpawner: storage (volume or host directory)")
    _wrap_async(TFSpawner, "_write_first_files", "TFSpawner: passwd entry (+ new volume) archive")
    _wrap_async(TFSpawner, "hub_state", "TFSpawner: hub_state")
    _wrap_async(TFSpawner, "resolve_ids", "TFSpawner: resolve_ids")


def _p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[max(1, math.ceil(0.95 * len(ordered))) - 1]


def summarize(path: str, windows=((0.0, math.inf),)) -> list[list[str]]:
    """Rows of phase, calls, mean s, p95 s, total s (and executor queueing for engine calls).

    Only events that began inside one of ``windows`` (monotonic start, end) count.
    """
    ran = defaultdict(list)
    queued = defaultdict(list)
    with open(path) as f:
        for line in f:
            event = json.loads(line)
            if not any(since <= event["start"] <= until for since, until in windows):
                continue
            ran[event["phase"]].append(event["seconds"])
            if event["kind"] == "docker":
                queued[event["phase"]].append(event["queued"])
    rows = []
    for phase in sorted(ran, key=lambda p: (p.startswith("docker"), p)):
        values = ran[phase]
        waits = queued.get(phase)
        rows.append(
            [
                phase,
                str(len(values)),
                f"{sum(values) / len(values):.3f}",
                f"{_p95(values):.3f}",
                f"{sum(values):.2f}",
                f"{sum(waits) / len(waits):.3f}" if waits else "",
            ]
        )
    return rows


SUMMARY_HEADER = ["phase", "calls", "mean s", "p95 s", "total s", "mean executor wait s"]
