"""Video input: the frame sampling rule (`xcomp.video.sampling`) and decoding of video files and frame folders
(`xcomp.video.decode`, with the optional decord backend in `xcomp.video.decord_reader`). The package re-exports
nothing: import from the defining module."""
