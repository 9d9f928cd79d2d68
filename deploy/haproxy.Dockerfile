# HAProxy for deploy/docker-compose.yml: Debian 12's haproxy 2.6, the package
# the tests run deploy/haproxy.cfg with, and socat for its runtime API
# (draining a replica before a restart; README, "Running at scale").
FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends haproxy socat \
    && rm -rf /var/lib/apt/lists/* \
    && mkdir -p /run/haproxy && chown haproxy:haproxy /run/haproxy
USER haproxy
EXPOSE 8080
# -W: master-worker, -db: in the foreground (the container's main process).
CMD ["haproxy", "-W", "-db", "-f", "/etc/haproxy/haproxy.cfg"]
