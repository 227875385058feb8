# mediabot container image.
#
#   docker build -t mediabot .     (or: buildah bud --format docker -t mediabot .: OCI drops HEALTHCHECK)
#   docker run -e TELEGRAM_BOT_TOKEN=... -v mediabot-state:/app/state mediabot           # daemon
#   docker run ... mediabot poll --once                                                   # cron style
#
# The base is a build argument so CI can build offline on a debootstrapped Debian bookworm
# (python3 + python3-venv, no `python` alias) as well as on the default python:3.12-slim.
ARG BASE=python:3.12-slim

# ---------------------------------------------------------------- builder: wheel + virtualenv
FROM ${BASE} AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_ROOT_USER_ACTION=ignore \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
# Only `python3` is guaranteed on both bases (Debian's python3 has no `python` alias).
RUN python3 -m venv /opt/mediabot && /opt/mediabot/bin/pip install --quiet --upgrade pip wheel
COPY pyproject.toml README.md ./
COPY bot ./bot
COPY watchlists ./watchlists
# Build the wheel (hatchling in pip's isolated build env), then install it with its dependencies.
RUN /opt/mediabot/bin/pip wheel --quiet --no-deps --wheel-dir /wheels . \
 && /opt/mediabot/bin/pip install --quiet /wheels/mediabot-*.whl \
 && /opt/mediabot/bin/mediabot --version \
 && /opt/mediabot/bin/python -m pip uninstall --quiet --yes pip wheel

# ---------------------------------------------------------------- final: no compilers, no pip caches
FROM ${BASE}
ENV PATH=/opt/mediabot/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    MEDIABOT_WATCHLISTS_DIR=/app/watchlists \
    MEDIABOT_STATE_DIR=/app/state
# The venv's interpreter is a symlink to the base's python3, which is why both stages share BASE.
COPY --from=builder /opt/mediabot /opt/mediabot
RUN groupadd --system --gid 10001 mediabot \
 && useradd --system --uid 10001 --gid mediabot --home-dir /app --no-create-home --shell /usr/sbin/nologin mediabot \
 && mkdir -p /app/state /app/watchlists \
 && chown mediabot:mediabot /app/state
# Shipped watchlists as the default; mount your own read-only over /app/watchlists.
COPY watchlists/ /app/watchlists/
WORKDIR /app
VOLUME ["/app/state"]
# numeric, so Kubernetes runAsNonRoot can verify it without runAsUser
USER 10001:10001
# 9108: /healthz and /metrics, served only when MEDIABOT_HTTP_ADDR is set (e.g. 0.0.0.0:9108).
EXPOSE 9108
# `mediabot health`: GET /healthz when MEDIABOT_HTTP_ADDR is set (loop, scheduler, store); otherwise
# only checks that the store opens, has a schema this binary understands and is writable.
HEALTHCHECK --interval=60s --timeout=10s --start-period=30s --retries=3 CMD ["mediabot", "health"]
ENTRYPOINT ["mediabot"]
CMD ["run"]
