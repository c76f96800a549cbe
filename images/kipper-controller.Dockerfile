# kipper-controller: reconciles Function resources (the image also carries the `kip` CLI).
# Build from the repository root:
#   docker build -f images/kipper-controller.Dockerfile -t kipper-controller .
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
RUN cargo build --release --locked -p kipper-controller --bin kipper-controller --bin kip \
 && strip target/release/kipper-controller target/release/kip

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/kipper-controller /usr/local/bin/kipper-controller
COPY --from=build /src/target/release/kip /usr/local/bin/kip
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/kipper-controller"]
