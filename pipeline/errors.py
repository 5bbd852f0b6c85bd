"""Why an upload did not become a song: stable reason codes that operators and the upload API read."""

from enum import StrEnum


class Outcome(StrEnum):
    FAILED = "failed"  # could not be processed (corrupt, undecodable, retries exhausted)
    BLOCKED = "blocked"  # refused by policy (not audio, dangerous container, over a limit)


class Reason(StrEnum):
    # blocked
    NOT_AUDIO = "not_audio"
    UNSUPPORTED_FORMAT = "unsupported_format"
    TOO_LARGE = "too_large"
    TOO_LONG = "too_long"
    TOO_SHORT = "too_short"
    TOO_MANY_STREAMS = "too_many_streams"
    # failed
    INVALID_UPLOAD = "invalid_upload"
    SOURCE_MISSING = "source_missing"
    UNREADABLE = "unreadable"
    DECODE_ERROR = "decode_error"
    RENDITION_INVALID = "rendition_invalid"
    TIMEOUT = "timeout"
    TOO_MANY_ATTEMPTS = "too_many_attempts"
    TRANSIENT_EXHAUSTED = "transient_exhausted"
    INTERNAL_ERROR = "internal_error"


_BLOCKED = {
    Reason.NOT_AUDIO,
    Reason.UNSUPPORTED_FORMAT,
    Reason.TOO_LARGE,
    Reason.TOO_LONG,
    Reason.TOO_SHORT,
    Reason.TOO_MANY_STREAMS,
}


class ContentError(Exception):
    """The upload itself cannot become a song; retrying will not help."""

    def __init__(self, reason: Reason, message: str) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.message = message

    def __reduce__(self) -> tuple[type["ContentError"], tuple[Reason, str]]:
        # Celery pickles a task's exception to report it; the default would lose reason and message.
        return (ContentError, (self.reason, self.message))

    @property
    def outcome(self) -> Outcome:
        return Outcome.BLOCKED if self.reason in _BLOCKED else Outcome.FAILED
