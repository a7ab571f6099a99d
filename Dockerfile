# syntax=docker/dockerfile:1
# Multi-stage build of a static coopr-gslb on a distroless, non-root base.
#   docker build --build-arg VERSION=v1.0.0 -t coopr-gslb .
#   docker run --rm -p 53:53/udp -p 53:53/tcp -p 8080:8080 -p 9090:9090 \
#     -v /etc/coopr-gslb/config.yaml:/etc/coopr-gslb/config.yaml:ro coopr-gslb
# Mount your config (config.example.yaml listens on 127.0.0.1 only: use
# 0.0.0.0 addresses in a container); the example is in /etc/coopr-gslb/.
# The binary carries the file capability CAP_NET_BIND_SERVICE, so the
# non-root user can bind port 53 (and 80/443) inside the container; Docker
# grants that capability by default. With `--cap-drop ALL` add it back:
# `--cap-add NET_BIND_SERVICE`.

FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/coopr-gslb . \
 && apt-get update && apt-get install -y --no-install-recommends libcap2-bin \
 && setcap cap_net_bind_service=+ep /out/coopr-gslb \
 && mkdir -p /out/state

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/coopr-gslb /usr/bin/coopr-gslb
COPY --from=build --chown=65532:65532 /out/state /var/lib/coopr-gslb
COPY config.example.yaml /etc/coopr-gslb/config.example.yaml
COPY LICENSE README.md /usr/share/doc/coopr-gslb/
USER 65532:65532
EXPOSE 53/udp 53/tcp 8080/tcp 8443/tcp 9090/tcp
VOLUME ["/var/lib/coopr-gslb"]
ENTRYPOINT ["/usr/bin/coopr-gslb"]
CMD ["run", "-config", "/etc/coopr-gslb/config.yaml"]
