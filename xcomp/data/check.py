"""`xcomp data check`: what a user runs on a benchmark copy before a long sweep — its counts, per breakdown value,
and the videos that are missing — as one ``name: value`` line per fact."""

from __future__ import annotations

from collections import Counter

from xcomp.data.benchmark import BenchmarkSource
from xcomp.data.source import QASource, all_sources, first_few, source_class
from xcomp.errors import ConfigError


def facts(source: QASource) -> tuple[list[tuple[str, str]], int]:
    """The facts of ``source``'s annotations and videos, and how many of its videos are missing. A bad row raises
    its `DataError` (the caller prints it as one line)."""
    questions, found = source.located()
    missing = [v for v, path in found.items() if path is None]
    lines = [
        ("benchmark", source.name),
        ("questions", str(len(questions))),
        ("videos", str(len(found))),
        ("missing videos", str(len(missing))),
    ]
    if missing:
        lines.append(("missing", first_few(missing)))
        lines.append(("questions on missing videos", str(sum(found[q.video] is None for q in questions))))
    for field in source.breakdowns:
        counts: Counter = Counter()
        for q in questions:
            value = q.meta.get(field)
            counts.update(value if isinstance(value, list) else [value])
        lines += [(f"{field}.{value}", str(n)) for value, n in sorted(counts.items(), key=lambda kv: str(kv[0]))]
    lines += [("note", note) for note in getattr(source, "notes", [])]
    return lines, len(missing)


def check(name: str, annotations: str, videos: str, allow_missing: bool = False) -> int:
    """Print the facts of benchmark ``name``; 1 when videos are missing (unless ``allow_missing``), else 0."""
    cls = source_class(name)
    if not issubclass(cls, BenchmarkSource):
        benchmarks = ", ".join(n for n, c in all_sources().items() if issubclass(c, BenchmarkSource))
        raise ConfigError(f"{name} is not read from a benchmark's files; data check takes {benchmarks}")
    source = cls(annotations=annotations, videos=videos, missing="skip")
    lines, missing = facts(source)
    for key, value in lines:
        print(f"{key}: {value}")
    if missing and not allow_missing:
        print(f"error: {missing} videos missing (--allow-missing to accept)", flush=True)
        return 1
    return 0
