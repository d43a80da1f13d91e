#!/bin/sh
# The worker behind examples/watchbot-worker/Dockerfile. wp runs it once per
# message: WP_SUBJECT is map or reduce, and each field of the part is a
# WP_PART_<FIELD> variable, so no JSON parsing is needed.
#
# A part is {"name": "...", "text": "..."}: the map counts the words of the
# text and stores the count; the reduce adds the counts up. Results go to
# RESULTS (an s3:// prefix on AWS, or a local directory).
#
# Exit codes: 0 done; 3 the part is malformed and retrying cannot help, so
# fail the job (the Dockerfile runs `wp run --fail-job-on 3`); anything else
# is retried by watchbot.
set -eu
RESULTS="${RESULTS:-/tmp/wp-results}"

put() { # put NAME VALUE
	case "$RESULTS" in
	s3://*) printf '%s\n' "$2" | aws s3 cp - "$RESULTS/$WP_JOB_ID/$1" ;;
	*) mkdir -p "$RESULTS/$WP_JOB_ID" && printf '%s\n' "$2" > "$RESULTS/$WP_JOB_ID/$1" ;;
	esac
}

sum_all() {
	case "$RESULTS" in
	s3://*)
		aws s3 cp --recursive "$RESULTS/$WP_JOB_ID/" /tmp/parts >/dev/null
		cat /tmp/parts/* ;;
	*) cat "$RESULTS/$WP_JOB_ID"/* ;;
	esac | awk '{ s += $1 } END { print s + 0 }'
}

case "$WP_SUBJECT" in
map)
	if [ -z "${WP_PART_TEXT+x}" ]; then
		echo "part $WP_PART_ID has no text field" >&2
		exit 3
	fi
	words=$(printf '%s\n' "$WP_PART_TEXT" | wc -w)
	echo "part $WP_PART_ID (${WP_PART_NAME:-unnamed}): $words words"
	put "$WP_PART_ID" "$words"
	;;
reduce)
	echo "job $WP_JOB_ID: $(sum_all) words in all"
	;;
*)
	echo "unexpected subject: $WP_SUBJECT" >&2
	exit 3
	;;
esac
