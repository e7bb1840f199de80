"""Video input: frame sampling rule and decoding of video files and frame folders."""

from xcomp.video.decode import BACKENDS, DecodeStrategy, Video, VideoBackend, check_backend, load_video
from xcomp.video.sampling import FrameSamplingConfig, FrameSchedule, sample_frames, target_frame_count

__all__ = [
    "BACKENDS",
    "DecodeStrategy",
    "FrameSamplingConfig",
    "FrameSchedule",
    "Video",
    "VideoBackend",
    "check_backend",
    "load_video",
    "sample_frames",
    "target_frame_count",
]
