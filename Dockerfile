# Phoenix Coupons service image. Production dependencies only: the `test` extra (embedded
# Kafka and MongoDB servers, pytest, linters) is never installed here.
#   docker build -t phoenix-coupons .
#   docker run -e MONGODB_URI=... -e KAFKA_BOOTSTRAP_SERVERS=... -e PHOENIX_SECRET_KEY=... \
#     -p 8080:8080 phoenix-coupons

ARG PYTHON_IMAGE=python:3.11-slim

# --- build: a virtualenv holding the package and its runtime dependencies -------------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
RUN python -m venv /opt/venv
# Dependencies first, from pyproject.toml alone, so a source change does not reinstall them.
COPY pyproject.toml README.md ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/requirements.txt \
    && /opt/venv/bin/pip install -r /tmp/requirements.txt
# Then the project itself (.dockerignore keeps the context to the packages).
COPY . .
RUN /opt/venv/bin/pip install --no-deps . \
    && /opt/venv/bin/pip check

# --- runtime ----------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE}
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PHOENIX_API_HOST=0.0.0.0 \
    PHOENIX_API_PORT=8080
RUN groupadd --system --gid 10001 phoenix \
    && useradd --system --uid 10001 --gid phoenix --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin phoenix
COPY --from=build /opt/venv /opt/venv
# Owned by root and not writable: the service keeps no local state. PHOENIX_SECRET_KEY must be
# set (the generated fallback key of `make run` is for development only).
WORKDIR /app
# Numeric, so that orchestrators can check runAsNonRoot.
USER 10001:10001
EXPOSE 8080
# slim has no curl: probe /healthz with the standard library (an error exits 1: unhealthy).
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('PHOENIX_API_PORT', '8080'), timeout=3)"]
# Exec form: the service is PID 1 and gets SIGTERM itself (graceful shutdown, 10 s).
CMD ["phoenix-coupons", "api"]
