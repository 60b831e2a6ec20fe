"""Process-tree helpers shared by the benchmarks (standard library only)."""

from __future__ import annotations

import os
from pathlib import Path


def process_tree(root: int, exclude: frozenset[int] = frozenset()) -> list[int]:
    """``root`` and every live descendant, read from /proc (Linux), except the subtrees of the
    processes in ``exclude``."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                ppid = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        if pid in exclude:
            continue
        out.append(pid)
        todo += children.get(pid, [])
    return out


def process_cpu(pid: int) -> float:
    """Seconds of CPU (user and system) process ``pid`` has used so far, from /proc (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def tree_pss(root: int, exclude: frozenset[int] = frozenset()) -> int:
    """Bytes of proportional set size (PSS) of ``root`` and its descendants: pages shared
    between them (a forked worker and its fork server) are counted once, not once each."""
    total = 0
    for pid in process_tree(root, exclude):
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1]) * 1024
                    break
        except OSError:
            continue
    return total


def _sample_peak(pid: int, interval: float, exclude: frozenset[int]) -> None:
    """Run as a process of its own: sample until stdin closes, then print the peak."""
    import select
    import sys

    peak = 0
    while not select.select([sys.stdin], [], [], interval)[0]:
        peak = max(peak, tree_pss(pid, exclude))
    print(max(peak, tree_pss(pid, exclude)), flush=True)


if __name__ == "__main__":
    import sys

    _sample_peak(int(sys.argv[1]), float(sys.argv[2]),
                 frozenset(int(p) for p in sys.argv[3:]))
