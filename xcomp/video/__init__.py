"""Video input: the frame sampling rule (`xcomp.video.sampling`) and decoding of video files and frame folders
(`xcomp.video.decode`, with the optional decord backend in `xcomp.video.decord_reader`).

The package re-exports nothing: import from the defining module. `load_video` and `BACKENDS` are still found
here, on first use, for `xcomp.cli` until it imports them from `xcomp.video.decode`.
"""

_MOVED = {"load_video": "xcomp.video.decode", "BACKENDS": "xcomp.video.decode"}
"""Names that importers outside this package still take from it, and the module that defines each."""


def __getattr__(name: str):
    """`load_video` and `BACKENDS` from `xcomp.video.decode`, imported when first asked for (PEP 562), so that
    importing a module of this package does not import the decoder."""
    if name not in _MOVED:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(_MOVED[name]), name)
