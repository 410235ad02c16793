"""The messages a start reports, streamed to the spawn page as they come."""

from __future__ import annotations

import asyncio


class ProgressEvents:
    """A Spawner mixin: ``_report`` adds an event, ``progress`` streams them."""

    def _report(self, message: str, progress: int) -> None:
        self._events.append({"progress": progress, "message": message})

    @property
    def _events(self) -> list[dict]:
        if not hasattr(self, "_event_list"):
            self._event_list = []
        return self._event_list

    async def progress(self):
        sent = 0
        while True:
            while sent < len(self._events):
                yield self._events[sent]
                sent += 1
            if not (self._spawn_pending or self._start_pending):
                break
            await asyncio.sleep(0.5)
