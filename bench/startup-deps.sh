#!/bin/sh
# What linking each of wp's heavy dependencies costs a process before main:
# one binary per dependency, each a hello world with that package imported
# for its side effects only (nothing from it is called), built as wp is
# (CGO_ENABLED=0, the versions in wp's go.mod), timed by hyperfine against a
# plain hello world and wp --version, medians of 200 runs each. Needs hyperfine (apt-get install -y
# hyperfine).
#
#   sh bench/startup-deps.sh
set -eu
cd "$(dirname "$0")/.."
root=$(pwd)
d=$(mktemp -d)
trap 'rm -rf "$d" "$root/internal/startupprobe"' EXIT
CGO_ENABLED=0 go build -tags urfave_cli_no_docs -o "$d/wp" .
for dep in \
	hello: \
	dynamodb:github.com/aws/aws-sdk-go-v2/service/dynamodb \
	sns:github.com/aws/aws-sdk-go-v2/service/sns \
	sqs:github.com/aws/aws-sdk-go-v2/service/sqs \
	config:github.com/aws/aws-sdk-go-v2/config \
	sqlite:modernc.org/sqlite \
	go-redis:github.com/redis/go-redis/v9 \
	urfave-cli:github.com/urfave/cli/v2; do
	name=${dep%%:*}
	pkg=${dep#*:}
	mkdir -p "$d/src/$name"
	{
		echo 'package main'
		echo 'import "fmt"'
		[ -z "$pkg" ] || echo "import _ \"$pkg\""
		echo 'func main() { fmt.Println("hello") }'
	} > "$d/src/$name/main.go"
	# Inside wp's module, so that the versions are wp's own.
	mkdir -p "$root/internal/startupprobe"
	cp "$d/src/$name/main.go" "$root/internal/startupprobe/main.go"
	CGO_ENABLED=0 go build -tags urfave_cli_no_docs -o "$d/$name" ./internal/startupprobe
	rm -rf "$root/internal/startupprobe"
done
cd "$d"
hyperfine -N --warmup 10 --runs 200 --style none --export-json "$d/report.json" \
	./hello ./urfave-cli ./go-redis ./sqlite ./sqs ./sns ./config ./dynamodb './wp --version' >/dev/null 2>&1
# Medians, and each against the hello world measured in the same run.
python3 - "$d/report.json" <<'PY'
import json, sys
rs = json.load(open(sys.argv[1]))["results"]
base = rs[0]["median"]
print("| binary | median ms | vs hello world |")
print("|---|---|---|")
for r in rs:
    print(f"| `{r['command']}` | {r['median']*1000:.1f} | {r['median']/base:.2f}x |")
PY
