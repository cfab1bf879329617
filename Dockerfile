# syntax=docker/dockerfile:1
# The forecaster service: `docker build -t forecaster .`, then `docker run -p 9108:9108 forecaster`
# replays the sample data; set FORECASTER_* variables (README.md) for Kafka and the rest.

# Build stage: install the package and its dependencies into a virtual environment.
FROM python:3.11-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
WORKDIR /src
COPY pyproject.toml README.md ./
COPY forecaster ./forecaster
# The confluent extra: FORECASTER_KAFKA_CLIENT=confluent selects librdkafka.
RUN /opt/venv/bin/pip install --no-cache-dir '.[confluent]'

# Runtime stage: the virtual environment and the sample ticks, nothing else. The compiled
# kernels' cache goes to /tmp (writable under Kubernetes' read-only root filesystem too).
FROM python:3.11-slim-bookworm
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/venv/bin:$PATH \
    FORECASTER_MODEL_DIR=/var/lib/forecaster/models \
    FORECASTER_INPUT=/app/sample_data/ticks.csv \
    FORECASTER_DEAD_LETTERS_OUT=/var/lib/forecaster/dead-letters.jsonl \
    FORECASTER_METRICS_PORT=9108 \
    NUMBA_CACHE_DIR=/tmp/numba-cache
RUN useradd --system --uid 10001 --user-group --no-create-home --home-dir /app \
        --shell /usr/sbin/nologin forecaster \
    && mkdir -p /var/lib/forecaster/models \
    && chown -R 10001:10001 /var/lib/forecaster
COPY --from=build /opt/venv /opt/venv
COPY sample_data/ticks.csv /app/sample_data/ticks.csv
WORKDIR /app
USER 10001:10001
EXPOSE 9108
# TensorFlow can take minutes to import on a busy host, hence the long start period.
HEALTHCHECK --interval=15s --timeout=5s --start-period=300s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('FORECASTER_METRICS_PORT', '9108'), timeout=4)"]
ENTRYPOINT ["forecaster", "run"]
