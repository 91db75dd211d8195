# The booking engine image: one image, the command picks the role (serve, worker, migrate).
# Runtime dependencies only (requirements.lock: no embedded servers, plots or test tools;
# a deployment names its Redis and PostgreSQL). Built in one stage, run from another
# that gets the virtual environment alone: no compiler, no pip cache, no sources.

FROM python:3.11-slim AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
RUN python -m venv /opt/booking
COPY requirements.lock /src/
RUN /opt/booking/bin/pip install --require-hashes -r /src/requirements.lock
COPY pyproject.toml README.md /src/
COPY api /src/api
COPY bench /src/bench
COPY engine /src/engine
COPY plumbing /src/plumbing
COPY realtime /src/realtime
COPY storage /src/storage
COPY waitroom /src/waitroom
# A wheel, not an editable install: the runtime stage has no /src.
RUN /opt/booking/bin/pip install --no-deps /src

FROM python:3.11-slim
ENV PATH=/opt/booking/bin:$PATH PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    BOOKING_LOG_FORMAT=json \
    BOOKING_HEALTHCHECK_URL=http://127.0.0.1:8000/readyz
# /var/lib/booking: the data directory a volume is mounted on (the sandbox gateway's state),
# owned by the user so a new named volume starts writable.
RUN useradd --system --create-home --uid 10001 booking \
    && install -d -o booking -g booking /var/lib/booking
COPY --from=build /opt/booking /opt/booking
USER booking
WORKDIR /home/booking
# 8000 HTTP API, 8001 WebSocket, 9100 a worker's /metrics, 9101.. those of serve --processes.
EXPOSE 8000 8001 9100 9101 9102
# Ready when Redis and PostgreSQL answer. The URL depends on the role: a single serve
# process answers on its HTTP port (the default), a worker on its metrics port, each of
# serve --processes N on its own metrics port (docker-compose.yml sets it per service).
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen(os.environ['BOOKING_HEALTHCHECK_URL'], timeout=3)"]
CMD ["booking", "serve", "--host", "0.0.0.0"]
