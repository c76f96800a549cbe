# kipper-runtime-python: kipper-shim in front of a Python 3.12 handler mounted at /app/function.
# Build from the repository root:
#   docker build -f images/kipper-runtime-python.Dockerfile -t kipper-runtime-python .
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

FROM python:3.12.8-slim-bookworm
RUN groupadd --gid 10001 kipper && useradd --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin kipper
COPY --from=build /src/target/release/kipper-shim /usr/local/bin/kipper-shim
# The code is a read-only ConfigMap: no .pyc beside it; pip writes under /tmp.
ENV PORT=8080 \
    KIPPER_RUNTIME=python \
    KIPPER_FUNCTION_PATH=/app/function/handler.py \
    KIPPER_PYTHON_BIN=/usr/local/bin/python3 \
    KIPPER_WORK_DIR=/tmp/kipper \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /app
USER 10001:10001
EXPOSE 8080 9092
ENTRYPOINT ["/usr/local/bin/kipper-shim"]
