#!/bin/sh
# Peak RSS and wall time of `wp create` on a 10,000,000-line input, on the
# Redis store with a local SNS endpoint (snsfake, a separate process, so its
# memory is not counted). Needs redis-server and GNU time (apt-get install -y
# time); takes a few minutes and about 500 MB of disk.
#
#   sh bench/create-10m.sh
set -eu
cd "$(dirname "$0")/.."
d=$(mktemp -d)
trap 'kill $sns 2>/dev/null; redis-cli -p $port shutdown nosave >/dev/null 2>&1 || true; rm -rf "$d"' EXIT
CGO_ENABLED=0 go build -o "$d/wp" .
go build -o "$d/snsfake" ./internal/snsfake/cmd/snsfake
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no --daemonize yes --dir "$d" >/dev/null
"$d/snsfake" serve "$d/addr" /dev/null & sns=$!
while [ ! -s "$d/addr" ]; do sleep 0.1; done
awk 'BEGIN { for (i = 0; i < 10000000; i++) printf "{\"url\":\"s3://bucket/key-%d\",\"n\":%d}\n", i, i }' > "$d/parts.ndjson"
echo "input: $(wc -l < "$d/parts.ndjson") lines, $(du -m "$d/parts.ndjson" | cut -f1) MB"
AWS_ENDPOINT_URL_SNS=$(cat "$d/addr") AWS_REGION=us-east-1 AWS_ACCESS_KEY_ID=x AWS_SECRET_ACCESS_KEY=x \
WP_PROGRESS="redis://127.0.0.1:$port/0" WorkTopic=arn:aws:sns:us-east-1:000000000000:wp-bench \
	/usr/bin/time -f 'wp create: wall %e s, peak RSS %M KB' "$d/wp" create --jobid create10m < "$d/parts.ndjson" >/dev/null
echo "job total in the store: $(redis-cli -p "$port" hget 'wp:{create10m}:job' total)"
