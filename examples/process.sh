#!/bin/sh
# An example worker: the same script runs under `wp local` on a laptop and
# under watchbot with `wp run -- ./process.sh`. It reads the part from the
# WP_PART_* variables wp sets, so it needs no JSON parser.
#
# Map (WP_SUBJECT=map): square the part's number and keep the result.
# Reduce (WP_SUBJECT=reduce): add the results up and print the total.
#
# Results go to a directory here; a real worker on watchbot keeps them
# somewhere all tasks share, such as S3.
set -eu
results="${RESULTS_DIR:-${TMPDIR:-/tmp}/wp-example}/$WP_JOB_ID"
mkdir -p "$results"

case "$WP_SUBJECT" in
map)
	square=$((WP_PART_N * WP_PART_N))
	echo "$WP_PART_NAME: $WP_PART_N squared is $square"
	echo "$square" > "$results/$WP_PART_ID"
	;;
reduce)
	total=0
	for f in "$results"/*; do
		total=$((total + $(cat "$f")))
	done
	echo "total: $total"
	;;
*)
	echo "unexpected subject: $WP_SUBJECT" >&2
	exit 3
	;;
esac
