# The pipeline's image: worker, scheduler, Flower and migrations all run from it.
FROM python:3.11-slim-bookworm

# ffmpeg/ffprobe from Debian: the only native tools the pipeline runs.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ffmpeg \
    && rm -rf /var/lib/apt/lists/*

RUN useradd --create-home --uid 10001 pipeline
WORKDIR /app

COPY pyproject.toml README.md ./
COPY pipeline ./pipeline
RUN pip install --no-cache-dir -e .
# Editable install: migrations (sql/) and rendition profiles (config/) are read from /app.
COPY sql ./sql
COPY config ./config

# Compile librosa's numba functions at build time into a cache the worker can read, so the first
# upload after a deploy pays no compilation; librosa's filter-bank cache starts there too.
ENV NUMBA_CACHE_DIR=/app/numba-cache \
    LIBROSA_CACHE_DIR=/app/librosa-cache \
    WORK_DIR=/tmp/audio-pipeline \
    PYTHONUNBUFFERED=1
RUN python -c "from pipeline.analysis import warm_up; warm_up()" \
    && chown -R pipeline:pipeline /app/numba-cache /app/librosa-cache

USER pipeline
CMD ["pipeline", "worker"]
