"""EBU R128 loudness of a whole upload, measured by ffmpeg's `ebur128` filter on the pipeline's one decode.

ffmpeg's filter implements ITU-R BS.1770-4 / EBU Tech 3341-3342 (K-weighting, gating, loudness range, true
peak by 4x oversampling) in C. The same in numpy costs more CPU (scipy's K-weighting alone ~0.3 s per 210 s
of 44.1 kHz stereo, the whole filter without true peak ~0.2 s), and the 22.05 kHz mono analysis PCM would
miss everything above 11 kHz and every inter-sample peak. The filter prints its results once, at the end,
as an info-level log summary; `parse_ebur128_summary` reads that summary and nothing else in the log.
"""

import re
from typing import Any

from pydantic import BaseModel, ConfigDict

# framelog=verbose: the per-100 ms lines go to a level the pipeline's ffmpeg does not print.
EBUR128_OPTIONS = {"peak": "true", "framelog": "verbose"}

# Loudness range is the spread of 3 s short-term loudness: a shorter input has no such window.
MIN_RANGE_SECONDS = 3.0
# ffmpeg reports -70 LUFS (the absolute gate) when every 400 ms block is below it: nothing to measure.
ABSOLUTE_GATE_LUFS = -70.0

REASON_SILENCE = "silence"
REASON_TOO_SHORT = "too_short"
# The audio's format changed mid-stream (MP3s of different sample rates joined, say): ffmpeg rebuilds its
# filters at each change, so each part is measured on its own and no measurement covers the whole.
REASON_STREAM_CHANGED = "stream_changed"

# The summary's first line carries the filter instance's log prefix; a tag in the upload's own metadata,
# which ffmpeg also prints at info level, is printed behind an "[info]" prefix and an indent, so it cannot
# forge this line. The values follow on unprefixed lines. ffmpeg builds the filter graph once before it
# prints its stream mapping, to learn the outputs, and that instance prints an empty summary: only those
# after the mapping measured audio.
_MAPPING = re.compile(r"^\[info\] Stream mapping:$", re.MULTILINE)
_SUMMARY = re.compile(r"^\[Parsed_ebur128_\d+ @ 0x[0-9a-f]+\] \[info\] Summary:$", re.MULTILINE)
_VALUE = re.compile(r"^ +(I|LRA|Peak): +(-?inf|-?\d+(?:\.\d+)?) (?:LUFS|LU|dBFS)$", re.MULTILINE)


class Loudness(BaseModel):
    """Integrated loudness (LUFS), loudness range (LU) and true peak (dBTP) of the decoded source."""

    model_config = ConfigDict(frozen=True)

    integrated_lufs: float | None
    range_lu: float | None
    true_peak_dbtp: float | None
    null_reason: str | None = None  # why a value is missing: silence, too short for a range, stream changed

    def to_metadata(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "loudness_lufs": self.integrated_lufs,
            "loudness_range_lu": self.range_lu,
            "true_peak_dbtp": self.true_peak_dbtp,
        }
        if self.null_reason is not None:
            out["loudness_null_reason"] = self.null_reason
        return out


def parse_ebur128_summary(log: str, decoded_seconds: float) -> Loudness:
    """The loudness in the ebur128 summary of an ffmpeg log (run with `-v level+info`)."""
    mapping = _MAPPING.search(log)
    summaries = list(_SUMMARY.finditer(log, mapping.end() if mapping else 0))
    if not mapping or not summaries:
        raise ValueError("ffmpeg's log has no stream mapping followed by an ebur128 summary")
    if len(summaries) > 1:
        return Loudness(integrated_lufs=None, range_lu=None, true_peak_dbtp=None, null_reason=REASON_STREAM_CHANGED)
    values: dict[str, float] = {}
    for name, value in _VALUE.findall(log, summaries[0].end()):
        values.setdefault(name, float(value))
    missing = {"I", "LRA", "Peak"} - values.keys()
    if missing:
        raise ValueError(f"ebur128 summary without {', '.join(sorted(missing))}")
    if values["I"] <= ABSOLUTE_GATE_LUFS or values["Peak"] == float("-inf"):
        return Loudness(integrated_lufs=None, range_lu=None, true_peak_dbtp=None, null_reason=REASON_SILENCE)
    too_short = decoded_seconds < MIN_RANGE_SECONDS
    return Loudness(
        integrated_lufs=values["I"],
        range_lu=None if too_short else values["LRA"],
        true_peak_dbtp=values["Peak"],
        null_reason=REASON_TOO_SHORT if too_short else None,
    )
