"""A disk cache of the frozen part of the model's vision path: the vision tower's tokens after ToMe merging, before
the projector's MLP (which SCT trains).

That part is over 90 % of an answer's FLOPs on the VideoChat-Flash-2B shape and depends neither on the question nor
on the compression arm, so the arms of a sweep, its reruns, a search's trials and a tuned model beside its base can
share it. An entry is keyed by everything the features depend on: a digest of the tower's weights, the video
file's identity (path, size, modification time), the sampled frame indices, the settings of the model's vision
path (image size, dtype, attention kernel, ToMe's tokens per frame and clip length) and the cache's `context`
(the job's video decoder). Entries are safetensors files written to a temporary name and renamed into place (a reader sees
a whole entry or none, and two jobs filling the same entry each write a whole one); an entry that cannot be read is
deleted and recomputed; past `max_bytes` the least recently used entries are deleted.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
import weakref
from pathlib import Path

import torch

from xcomp.tracking import fingerprint

SUFFIX = ".safetensors"


def weights_digest(module: torch.nn.Module) -> str:
    """A hash of a module's parameters and buffers (names, shapes, dtypes and bytes)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        data = tensor.detach().to("cpu").contiguous()
        digest.update(f"{name}:{tuple(data.shape)}:{data.dtype};".encode())
        digest.update(data.view(torch.uint8).numpy().tobytes() if data.numel() else b"")
    return digest.hexdigest()[:32]


def file_identity(source: str) -> dict | None:
    """Where frames came from, as a file system sees it; None for frames that came from no file."""
    path = Path(source)
    try:
        stat = path.stat()
    except OSError:
        return None
    entries = len(os.listdir(path)) if path.is_dir() else None
    return {"path": str(path.resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "entries": entries}


def vision_settings(model, image_size: int, dtype: torch.dtype) -> dict:
    """The settings of ``model``'s vision path that its merged tokens depend on, besides the tower's weights:
    what evaluation and training both key entries by, so that each finds the other's."""
    config = model.config
    return {
        "image_size": image_size, "dtype": str(dtype), "attention": config._attn_implementation,
        "tokens_per_frame": config.tokens_per_frame, "clip": config.local_num_frames,
    }  # fmt: skip


class FeatureCache:
    """Merged vision-tower tokens on disk, keyed by what they depend on; counts its hits, misses, and the entries
    it found unreadable (deleted and computed again)."""

    def __init__(self, folder: str | Path, max_bytes: int, context: dict | None = None):
        self.folder = Path(folder)
        self.max_bytes = max_bytes
        self.context = dict(context or {})
        """What else the frames depend on, mixed into every key (a job's video decoder)."""
        self.hits = self.misses = self.unreadable = 0
        self._digests: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    def digest(self, tower: torch.nn.Module) -> str:
        """`weights_digest` of ``tower``, computed again only when one of its tensors was modified in place since
        (a tower that trains gets new entries; a frozen one keeps its digest)."""
        versions = tuple(t._version for t in tower.state_dict().values())
        known = self._digests.get(tower)
        if known is None or known[0] != versions:
            self._digests[tower] = (versions, weights_digest(tower))
        return self._digests[tower][1]

    def key(self, tower_digest: str, source: str, indices, settings: dict) -> str | None:
        """The entry of the frames at ``indices`` of video ``source`` through a tower with that digest and a vision
        path with these ``settings`` (`vision_settings`), or None when the frames have no file to be identified
        by."""
        identity = file_identity(source)
        if identity is None:
            return None
        return fingerprint({
            "tower": tower_digest, "video": identity, "indices": [int(i) for i in indices], **settings,
            "context": self.context,
        })  # fmt: skip

    def _path(self, key: str) -> Path:
        return self.folder / key[:2] / f"{key}{SUFFIX}"

    def load(self, key: str) -> torch.Tensor | None:
        """The entry's features (counted as a hit), or None (a miss) when it is absent or unreadable (deleted)."""
        from safetensors.torch import load_file

        path = self._path(key)
        try:
            features = load_file(path)["features"]
        except OSError:  # absent, or a file system that failed this once: computed, the entry left as it is
            self.misses += 1
            return None
        except Exception:  # a partial or corrupt file, whatever safetensors raises for it: computed again
            path.unlink(missing_ok=True)
            self.misses += 1
            self.unreadable += 1
            return None
        with contextlib.suppress(FileNotFoundError):  # evicted meanwhile by another job
            os.utime(path)  # recently used
        self.hits += 1
        return features

    def store(self, key: str, features: torch.Tensor) -> None:
        """Write the entry atomically, then evict the least recently used entries past the size cap."""
        from safetensors.torch import save_file

        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, scratch = tempfile.mkstemp(prefix=f".{key}-", suffix=SUFFIX, dir=path.parent)
        os.close(handle)
        try:
            save_file({"features": features.detach().to("cpu").contiguous()}, scratch)
            os.replace(scratch, path)
        finally:
            Path(scratch).unlink(missing_ok=True)
        self.evict()

    def evict(self) -> None:
        """Delete the least recently used entries until the cache holds at most `max_bytes`."""
        entries = []
        for path in self.folder.glob(f"*/*{SUFFIX}"):
            try:
                stat = path.stat()
            except FileNotFoundError:  # evicted meanwhile by another job
                continue
            if not path.name.startswith("."):
                entries.append((stat.st_mtime_ns, stat.st_size, path))
        total = sum(size for _, size, _ in entries)
        for _, size, path in sorted(entries):
            if total <= self.max_bytes:
                break
            path.unlink(missing_ok=True)
            total -= size
