"""Summarize the py-spy samples that `login_storm.py --py-spy` leaves next to the hub logs.

    .venv/bin/python benchmarks/profile_summary.py DIR [--match REGEX] [--top 40]

Groups the collapsed-stack files by spawner and round (pooling repeats), and
prints for each group the samples per spawn and the functions with the most
inclusive samples. py-spy ran with --gil, so a sample is time the hub held
the GIL: Python CPU, not waiting.
"""

from __future__ import annotations

import argparse
import re
from collections import Counter, defaultdict
from pathlib import Path

NAME = re.compile(r"n(?P<n>\d+)-r\d+-(?P<spawner>\w+)-(?P<round>cold|warm)\.pyspy\.txt$")


def frame_key(frame: str) -> str:
    """'function (path/to/module.py:123)' -> 'function module-path', line numbers dropped."""
    function, _, where = frame.partition(" (")
    path = where.split(":")[0]
    path = path.split("site-packages/")[-1]
    return f"{function}  [{path}]"


def inclusive(path: Path) -> tuple[int, Counter]:
    total, counts = 0, Counter()
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        samples = int(count)
        total += samples
        for key in {frame_key(f) for f in stack.split(";")}:
            counts[key] += samples
    return total, counts


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dir", type=Path)
    parser.add_argument("--match", default="", help="only functions whose key matches")
    parser.add_argument("--top", type=int, default=40)
    args = parser.parse_args(argv)
    groups: dict[tuple, list[Path]] = defaultdict(list)
    for path in sorted(args.dir.glob("*.pyspy.txt")):
        m = NAME.search(path.name)
        if m:
            groups[(int(m["n"]), m["round"], m["spawner"])].append(path)
    pattern = re.compile(args.match)
    for (n, round_, spawner), paths in sorted(groups.items()):
        total, counts = 0, Counter()
        for path in paths:
            t, c = inclusive(path)
            total += t
            counts.update(c)
        spawns = n * len(paths)
        print(
            f"\n== N={n} {round_} {spawner}: {total} samples in {len(paths)} storm(s), "
            f"{total / spawns:.1f} per spawn"
        )
        shown = 0
        for key, samples in counts.most_common():
            if shown >= args.top:
                break
            if pattern.search(key):
                print(f"  {samples / spawns:8.1f}/spawn {100 * samples / total:5.1f}%  {key}")
                shown += 1


if __name__ == "__main__":
    main()
