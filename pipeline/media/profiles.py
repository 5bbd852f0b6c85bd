"""Rendition profiles, loaded from config/renditions.toml."""

import tomllib
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

# What each encoder writes: file extension, ffmpeg muxer, ffprobe codec name, HTTP content type.
_ENCODERS = {"libmp3lame": ("mp3", "mp3", "mp3", "audio/mpeg")}


class RenditionProfile(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: str
    codec: str = Field(pattern="^(" + "|".join(_ENCODERS) + ")$")
    bitrate_kbps: int = Field(gt=0, le=320)
    sample_rate: int = Field(gt=0)
    channels: int = Field(ge=1, le=2)
    duration_seconds: float | None = Field(default=None, gt=0)  # set: an excerpt (preview)
    fade_seconds: float = Field(default=0.0, ge=0)
    # A source already in this codec at no more than this bit rate is copied, not re-encoded:
    # re-encoding a lossy file at a higher bit rate costs CPU and only adds loss.
    copy_when_source_fits: bool = False

    @property
    def extension(self) -> str:
        return _ENCODERS[self.codec][0]

    @property
    def muxer(self) -> str:
        return _ENCODERS[self.codec][1]

    @property
    def probed_codec(self) -> str:
        return _ENCODERS[self.codec][2]

    @property
    def content_type(self) -> str:
        return _ENCODERS[self.codec][3]


class RenditionSet(BaseModel):
    model_config = ConfigDict(frozen=True)

    version: int
    profiles: tuple[RenditionProfile, ...]

    @property
    def full_length(self) -> tuple[RenditionProfile, ...]:
        return tuple(p for p in self.profiles if p.duration_seconds is None)

    @property
    def excerpts(self) -> tuple[RenditionProfile, ...]:
        return tuple(p for p in self.profiles if p.duration_seconds is not None)


def load_profiles(path: Path) -> RenditionSet:
    data = tomllib.loads(path.read_text())
    profiles = tuple(RenditionProfile(name=name, **spec) for name, spec in data["profiles"].items())
    return RenditionSet(version=data["version"], profiles=profiles)
