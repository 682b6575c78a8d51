# The caddy-uma binary (Caddy with its standard modules and caddy-uma's),
# built from this checkout, in a small image that runs as a non-root user
# with its data on a volume.
#
#   docker build -t caddy-uma .
#   docker run -p 8080:8080 -p 8081:8081 -v caddy-uma-data:/data caddy-uma
#
# The default config is Caddyfile.example (plain http on localhost, for a
# try-out); mount your own at /etc/caddy/Caddyfile for anything else.

FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o /out/caddy ./cmd/caddy

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates tzdata \
	&& rm -rf /var/lib/apt/lists/* \
	&& useradd --system --uid 10001 --home-dir /data --shell /usr/sbin/nologin caddy \
	&& mkdir -p /data /config /etc/caddy && chown caddy:caddy /data /config \
	&& ln -s /data /etc/caddy/data
COPY --from=build /out/caddy /usr/bin/caddy
COPY Caddyfile.example /etc/caddy/Caddyfile
COPY examples /etc/caddy/examples
# Caddy keeps its data (certificates, and the uma app's Badger database
# unless a storage directive says otherwise) under XDG_DATA_HOME. The
# example's relative paths resolve from /etc/caddy: ./data is the volume,
# ./examples/policies the example rules.
ENV XDG_DATA_HOME=/data XDG_CONFIG_HOME=/config HOME=/data
USER caddy
WORKDIR /etc/caddy
VOLUME /data
EXPOSE 8080 8081 2019
ENTRYPOINT ["/usr/bin/caddy"]
CMD ["run", "--config", "/etc/caddy/Caddyfile", "--adapter", "caddyfile"]
