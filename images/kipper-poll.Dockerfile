# kipper-poll: the event-trigger sidecar.
# Build from the repository root:
#   docker build -f images/kipper-poll.Dockerfile -t kipper-poll .
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
RUN cargo build --release --locked -p kipper-poll --bin kipper-poll \
 && strip target/release/kipper-poll

# glibc and CA certificates only; runs as the image's nonroot user (65532).
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/kipper-poll /usr/local/bin/kipper-poll
USER 65532:65532
EXPOSE 9090
ENTRYPOINT ["/usr/local/bin/kipper-poll"]
