# kipper-runtime-node: kipper-shim in front of a Node 22 handler mounted at /app/function.
# Build from the repository root:
#   docker build -f images/kipper-runtime-node.Dockerfile -t kipper-runtime-node .
FROM rust:1.89.0-slim-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY poll-sidecar poll-sidecar
COPY runtime-shim runtime-shim
COPY controller controller
COPY bench bench
COPY tls tls
COPY fake-apiserver fake-apiserver
COPY contract contract
RUN cargo build --release --locked -p kipper-shim --bin kipper-shim \
 && strip target/release/kipper-shim

FROM node:22.12.0-bookworm-slim
COPY --from=build /src/target/release/kipper-shim /usr/local/bin/kipper-shim
# Everything the shim writes (worker sockets, bootstrap, installed dependencies,
# npm's cache) goes under /tmp, so the root filesystem can be read-only.
ENV PORT=8080 \
    KIPPER_RUNTIME=node \
    KIPPER_FUNCTION_PATH=/app/function/index.js \
    KIPPER_WORK_DIR=/tmp/kipper \
    npm_config_cache=/tmp/kipper/npm-cache \
    NODE_ENV=production
WORKDIR /app
# The node image's unprivileged user.
USER 1000:1000
EXPOSE 8080 9092
ENTRYPOINT ["/usr/local/bin/kipper-shim"]
