"""Video input: frame sampling rule and decoding of video files and frame folders."""

from xcomp.video.decode import DecodeStrategy, Video, load_video
from xcomp.video.sampling import FrameSamplingConfig, FrameSchedule, sample_frames, target_frame_count

__all__ = [
    "DecodeStrategy",
    "FrameSamplingConfig",
    "FrameSchedule",
    "Video",
    "load_video",
    "sample_frames",
    "target_frame_count",
]
