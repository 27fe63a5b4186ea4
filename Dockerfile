# syntax=docker/dockerfile:1
#
# One image for the three services. Cloud Run picks the service with the container command,
# e.g. command = ["/usr/local/bin/sigma-decrypt"] (see infra/run.tf); with no command it runs
# sigma-decrypt. The `sigma` operator CLI is not in it: operators run it where their own
# credentials are (`cargo install --path cli`), and its Workflow Executions and Cloud Storage
# clients would add 15 MB to every cold start of every service.
#
#   docker build -t sigma .
#   docker run --rm -p 8080:8080 -e OUTPUT_BUCKET=... sigma /usr/local/bin/sigma-decrypt
#
# Builder and runtime share Debian 12 (bookworm), so the binaries link against the glibc they run
# with. Pin both by digest as well (image@sha256:...) when promoting a release.

# cargo-chef turns the workspace manifests into a recipe, so the dependency layer below is
# rebuilt only when a Cargo.toml or Cargo.lock changes, not on every source edit.
FROM rust:1.95.0-slim-bookworm AS chef
RUN cargo install cargo-chef --locked --version 0.1.78
WORKDIR /src

FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS builder
COPY --from=planner /src/recipe.json recipe.json
RUN cargo chef cook --release --locked --recipe-path recipe.json
COPY . .
# The same command `make release` (and so `make test`) runs: the workspace's release profile
# builds without debug info and strips the binaries (Cargo.toml, [profile.release]), so the
# image ships the binaries the tests ran, a fraction of their unstripped size (cold starts on
# Cloud Run include pulling the image; sizes in infra/README.md).
RUN cargo build --release --locked

# distroless/cc: glibc, libgcc, CA certificates and tzdata, no shell, no package manager. The
# runtime image is that base plus the three service binaries below.
FROM gcr.io/distroless/cc-debian12:nonroot
#checkov:skip=CKV_DOCKER_2:Cloud Run ignores Docker HEALTHCHECK and probes GET /healthz itself (startup and liveness probes in infra/run.tf); the distroless image has no shell or client to run one.
COPY --from=builder /src/target/release/sigma-decrypt /src/target/release/sigma-dataflow /src/target/release/sigma-dataform /usr/local/bin/
USER 65532:65532
EXPOSE 8080
CMD ["/usr/local/bin/sigma-decrypt"]
