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


def check(name: str, annotations: str, videos: str | None, allow_missing: bool = False) -> int:
    """Print the facts of benchmark or training data ``name`` (a training source's `TrainSource.facts`: a data
    mixture); 1 when media are missing (unless ``allow_missing``), else 0."""
    from xcomp.train.sources.source import all_train_sources

    training = all_train_sources()
    if name in training and name not in all_sources():
        lines, missing = training[name].from_files(annotations, videos).facts()
    else:
        cls = source_class(name)
        if not issubclass(cls, BenchmarkSource):
            benchmarks = [n for n, c in all_sources().items() if issubclass(c, BenchmarkSource)]
            raise ConfigError(f"{name} is not read from a benchmark's files; data check takes "
                              f"{', '.join(benchmarks)} and training data {', '.join(_from_files(training))}")  # fmt: skip
        if videos is None:
            raise ConfigError(f"data check {name} needs --videos (the benchmark's video folder)")
        lines, missing = facts(cls(annotations=annotations, videos=videos, missing="skip"))
    for key, value in lines:
        print(f"{key}: {value}")
    if missing and not allow_missing:
        print(f"error: {missing} media files missing (--allow-missing to accept)", flush=True)
        return 1
    return 0


def _from_files(training: dict) -> list[str]:
    """Training sources read from users' files (those that override `TrainSource.from_files`)."""
    from xcomp.train.sources.source import TrainSource

    return [n for n, c in training.items() if c.from_files.__func__ is not TrainSource.from_files.__func__]
