# syntax=docker/dockerfile:1
#
# hero-host serving the Hero Registry component, as a small non-root image.
#
#   docker build -t hero-registry:0.1.0 .
#   docker run --rm -p 3000:3000 -p 9464:9464 --read-only -v hero-data:/data hero-registry:0.1.0
#
# Stage 1 builds the component (wasm32-wasip2) and the host (native, release)
# from the locked workspace. Stage 2 is debian:bookworm-slim (glibc and
# libgcc_s are all hero-host links against); it keeps a shell only so the
# Fluent Bit sidecar variant (k8s/components/logging-sidecar) can tee stdout
# to a shared file. hero-host itself needs nothing from it.

ARG RUST_VERSION=1.95

FROM docker.io/library/rust:${RUST_VERSION}-bookworm AS build
WORKDIR /src
RUN rustup target add wasm32-wasip2
COPY . .
RUN cargo build --locked --target wasm32-wasip2 --release -p hero-registry \
 && cargo build --locked --release -p hero-host \
 && mkdir -p /out/app/target/wasm32-wasip2/release /out/data \
 && cp spin.toml /out/app/spin.toml \
 && cp target/wasm32-wasip2/release/hero_registry.wasm /out/app/target/wasm32-wasip2/release/ \
 && cp target/release/hero-host /out/hero-host

# bookworm, so the host's glibc matches the builder's.
FROM docker.io/library/debian:bookworm-slim
# spin.toml's `source` is relative to the manifest, so the wasm keeps its
# target/ path beside it.
COPY --from=build /out/app /app
COPY --from=build /out/hero-host /usr/local/bin/hero-host
# The state dir (SQLite key-value store, compiled component cache) is the only
# place the host writes: a volume, so the root filesystem can be read-only.
COPY --from=build --chown=10001:10001 /out/data /data
WORKDIR /app
# Numeric, so Kubernetes' runAsNonRoot can verify it without /etc/passwd.
USER 10001:10001
ENV HERO_HOST_FROM=/app/spin.toml \
    HERO_HOST_STATE_DIR=/data
VOLUME ["/data"]
# 3000: the API. 9464: /metrics, /healthz, /readyz (keep it off the public network).
EXPOSE 3000 9464
# SIGTERM (the default stop signal) drains in-flight requests within
# --shutdown-grace (25 s) and exits 0: give `docker stop -t` and Kubernetes'
# terminationGracePeriodSeconds more than that.
ENTRYPOINT ["/usr/local/bin/hero-host", "up", "--listen", "0.0.0.0:3000", "--admin-listen", "0.0.0.0:9464"]
