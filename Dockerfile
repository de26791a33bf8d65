# callstream: one static binary, every subcommand. Multi-stage: build with the
# Go toolchain, run on distroless as a non-root user.
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/callstream ./cmd/callstream

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/callstream /callstream
USER nonroot:nonroot
WORKDIR /var/lib/callstream
ENV CALLSTREAM_STATE_DIR=/var/lib/callstream CALLSTREAM_HTTP_LISTEN=0.0.0.0:9464 CALLSTREAM_LOG_FORMAT=json
EXPOSE 9464
ENTRYPOINT ["/callstream"]
CMD ["run"]
