# A small Redis image built from the local Debian base, for machines with no container registry.
# CI sets REDIS_IMAGE=parley-redis:bookworm so compose uses it instead of the official image.
ARG BASE_IMAGE=debian:bookworm-slim
FROM ${BASE_IMAGE}

RUN apt-get update \
    && apt-get install -y --no-install-recommends redis-server=5:7.* \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10002 --user-group --no-create-home --home-dir /data redisuser \
    && install -d -o redisuser -g redisuser /data

USER 10002:10002
WORKDIR /data
EXPOSE 6379
# No persistence: the relay keeps only ephemeral room state in Redis.
CMD ["redis-server", "--bind", "0.0.0.0", "--protected-mode", "no", "--save", "", "--appendonly", "no"]
