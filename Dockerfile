# The gateway's own image (docker-compose.yml builds it). PYTHON_IMAGE can point at any
# Debian-based image with Python 3.11+ and pip.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm
FROM ${PYTHON_IMAGE}

USER root
RUN apt-get update \
 && apt-get install -y --no-install-recommends git ca-certificates \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY pyproject.toml README.md ./
COPY gateway ./gateway
RUN python3 -m pip install --no-cache-dir /app

# Talking to the Docker socket is root-equivalent anyway; the notebooks themselves never run
# as root.
ENV STATE_DIR=/var/lib/notebook-gateway \
    PYTHONUNBUFFERED=1
VOLUME ["/var/lib/notebook-gateway"]
EXPOSE 3000
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s \
  CMD ["python3", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health' % os.environ.get('GATEWAY_PORT', '3000'), timeout=4)"]
CMD ["notebook-gateway", "serve"]
