# syntax=docker/dockerfile:1
#
# hero-host serving the Hero Registry component, as a small non-root image,
# for linux/amd64 and linux/arm64.
#
#   docker build -t hero-registry:0.1.0 .
#   docker buildx build --platform linux/amd64,linux/arm64 -t <registry>/hero-registry:0.1.0 --push .
#   docker run --rm -p 3000:3000 -p 9464:9464 --read-only -v hero-data:/data hero-registry:0.1.0
#
# The build stages run on the build machine's own platform ($BUILDPLATFORM)
# and cross-compile hero-host for the target's ($TARGETARCH) with Debian's
# cross gcc as linker and C compiler (SQLite, ring): no emulation. The
# component is wasm32-wasip2 whatever the platform.
#
# Dependencies are compiled in their own layer by cargo-chef from a recipe of
# the manifests and Cargo.lock only: a change to the app's or the host's
# sources reuses that layer (wasmtime is not compiled again); a change to
# Cargo.lock rebuilds it.
#
# The last stage is debian:bookworm-slim (glibc and libgcc_s are all
# hero-host links against); it keeps a shell only so the Fluent Bit sidecar
# variant (k8s/components/logging/fluent-bit-sidecar) can tee stdout to a
# shared file. hero-host itself needs nothing from it. It has no RUN step,
# so building it for another platform runs nothing of that platform.

ARG RUST_VERSION=1.95
ARG CARGO_CHEF_VERSION=0.1.78

FROM --platform=$BUILDPLATFORM docker.io/library/rust:${RUST_VERSION}-bookworm AS chef
ARG CARGO_CHEF_VERSION
RUN cargo install cargo-chef --locked --version "${CARGO_CHEF_VERSION}" \
 && rustup target add wasm32-wasip2
WORKDIR /src

# The recipe: manifests, Cargo.lock and the crates' target layout.
FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS build
ARG TARGETARCH
# The Rust target and Debian's gcc for $TARGETARCH; the cross gcc only when
# it differs from the build machine's.
RUN set -eu; \
    case "$TARGETARCH" in \
      amd64) triple="x86_64-unknown-linux-gnu"; gcc="gcc-x86-64-linux-gnu" ;; \
      arm64) triple="aarch64-unknown-linux-gnu"; gcc="gcc-aarch64-linux-gnu" ;; \
      *) echo "unsupported TARGETARCH $TARGETARCH (amd64, arm64)" >&2; exit 1 ;; \
    esac; \
    if [ "$(dpkg --print-architecture)" != "$TARGETARCH" ]; then \
      apt-get update; \
      apt-get install -y --no-install-recommends "$gcc" "libc6-dev-${TARGETARCH}-cross"; \
      rm -rf /var/lib/apt/lists/*; \
    fi; \
    rustup target add "$triple"; \
    echo "$triple" > /rust-target
# Linker and C compiler per target (cargo and the cc crate read these); on
# the native platform they name its own gcc.
ENV CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_LINKER=x86_64-linux-gnu-gcc \
    CC_x86_64_unknown_linux_gnu=x86_64-linux-gnu-gcc \
    AR_x86_64_unknown_linux_gnu=x86_64-linux-gnu-ar \
    CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc \
    CC_aarch64_unknown_linux_gnu=aarch64-linux-gnu-gcc \
    AR_aarch64_unknown_linux_gnu=aarch64-linux-gnu-ar
COPY --from=planner /src/recipe.json recipe.json
# The dependency layer: wasmtime, hyper, SQLite, ... for hero-host, and
# spin-sdk for the component. hero-host ships with the `dist` profile
# (Cargo.toml: whole-program LTO, one codegen unit).
RUN cargo chef cook --locked --profile dist --target "$(cat /rust-target)" -p hero-host --recipe-path recipe.json \
 && cargo chef cook --locked --release --target wasm32-wasip2 -p hero-registry --recipe-path recipe.json
COPY . .
RUN target="$(cat /rust-target)" \
 && cargo build --locked --release --target wasm32-wasip2 -p hero-registry \
 && cargo build --locked --profile dist --target "$target" -p hero-host \
 && mkdir -p /out/app/target/wasm32-wasip2/release /out/data \
 && cp spin.toml /out/app/spin.toml \
 && cp target/wasm32-wasip2/release/hero_registry.wasm /out/app/target/wasm32-wasip2/release/ \
 && cp "target/$target/dist/hero-host" /out/hero-host

# bookworm, so the host's glibc matches the cross toolchain's (libc6-dev-*-cross
# of the same release).
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
