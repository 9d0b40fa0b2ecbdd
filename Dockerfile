# syntax=docker/dockerfile:1
# omen's image: a static binary on distroless, running as an unprivileged
# user with nothing else in the image. Build it from the repository root:
#   docker build -t omen:dev \
#     --build-arg VERSION=$(git describe --tags --always) \
#     --build-arg REVISION=$(git rev-parse HEAD) .
# deploy/docker_test.go checks this file (TestDockerfile) and that the build
# needs no cgo; with OMEN_DOCKER_BUILD=1 it runs this file's go build and
# checks the binary is static (TestDockerfileBuildIsStatic).

FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
ARG REVISION=unknown
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w -X github.com/prometheus/common/version.Version=${VERSION} -X github.com/prometheus/common/version.Revision=${REVISION} -X github.com/prometheus/common/version.Branch=HEAD -X github.com/prometheus/common/version.BuildUser=docker -X github.com/prometheus/common/version.BuildDate=$(date -u +%Y%m%d-%H:%M:%S)" -o /out/omen ./cmd/omen
# The data directory must exist and belong to the runtime user: Kubernetes
# mounts a volume there, docker run an anonymous one.
RUN mkdir -p /out/data

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/omen /omen
COPY --from=build --chown=65532:65532 /out/data /data
USER 65532:65532
EXPOSE 9201
VOLUME ["/data"]
ENTRYPOINT ["/omen"]
CMD ["serve", "--web.listen-address=:9201", "--storage.tsdb.path=/data"]
