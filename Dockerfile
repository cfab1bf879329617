# syntax=docker/dockerfile:1
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY pyproject.toml README.md ./
COPY forecaster ./forecaster
COPY sample_data ./sample_data
RUN pip install --no-cache-dir . \
    && useradd --system --uid 10001 --home-dir /app forecaster \
    && mkdir -p /var/lib/forecaster/models \
    && chown -R forecaster /var/lib/forecaster

USER forecaster
ENV FORECASTER_MODEL_DIR=/var/lib/forecaster/models \
    FORECASTER_INPUT=/app/sample_data/ticks.csv
EXPOSE 9108
HEALTHCHECK --interval=15s --timeout=3s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:9108/healthz', timeout=2).status != 200)"]
ENTRYPOINT ["forecaster", "run"]
