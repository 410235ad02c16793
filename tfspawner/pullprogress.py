"""Turn the engine's pull stream into one percentage.

The engine reports each layer separately ("Downloading" with current/total
bytes, then "Extracting"). Downloading counts for the first 80%, extracting
for the rest; layers that already exist count as done.
"""

from __future__ import annotations

from dataclasses import dataclass, field

_DONE = {"Already exists", "Pull complete", "Download complete"}


class PullFailed(RuntimeError):
    pass


@dataclass
class PullProgress:
    layers: dict[str, tuple[int, int, bool]] = field(default_factory=dict)
    done: bool = False

    def update(self, event: dict) -> None:
        """Feed one decoded event of ``APIClient.pull(..., stream=True, decode=True)``."""
        if "error" in event:
            raise PullFailed(event.get("error") or "pull failed")
        layer, status = event.get("id"), event.get("status", "")
        if status.startswith(("Digest:", "Status:")):
            self.done = True
            return
        if not layer or status.startswith(("Pulling from", "Pulling fs layer", "Waiting")):
            if layer and layer not in self.layers and status != "Pulling from":
                self.layers[layer] = (0, 0, False)
            return
        current, total, extracted = self.layers.get(layer, (0, 0, False))
        detail = event.get("progressDetail") or {}
        if status == "Downloading" and detail.get("total"):
            current, total = detail.get("current", 0), detail["total"]
        elif status == "Extracting":
            current = total = max(total, 1)
        elif status in _DONE:
            current = total = max(total, 1)
            extracted = status != "Download complete"
        self.layers[layer] = (current, total, extracted)

    @property
    def percent(self) -> int:
        if self.done:
            return 100
        if not self.layers:
            return 0
        downloaded = sum(c / t if t else 0 for c, t, _ in self.layers.values())
        extracted = sum(1 for *_, e in self.layers.values() if e)
        share = (0.8 * downloaded + 0.2 * extracted) / len(self.layers)
        return min(99, int(share * 100))
