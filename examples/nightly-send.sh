#!/bin/sh
# Nightly batch send: everything under SOURCE to PEER, with retries, a report, and a resume of
# whatever the last run could not store. Exit 0 only when every file is stored on PEER.
#
#   examples/nightly-send.sh PACS /data/export /var/lib/dcmtool-nightly
#
# The report of each run is kept in STATE as report.json; a run that did not store everything
# (exit 7 partial, 3/4/5 connection, association or abort problems) leaves it there, and the
# next run sends only what is missing. Exit codes are dcmtool's (see 'dcmtool --help').
set -u
PEER=${1:?usage: nightly-send.sh PEER SOURCE STATE}
SOURCE=${2:?usage: nightly-send.sh PEER SOURCE STATE}
STATE=${3:?usage: nightly-send.sh PEER SOURCE STATE}
mkdir -p "$STATE"
report="$STATE/report.json"
resume=""
if [ -f "$report" ]; then
    mv "$report" "$STATE/previous.json"
    resume="--resume $STATE/previous.json"
fi
# shellcheck disable=SC2086 # $resume is empty or two words
dcmtool store "$PEER" "$SOURCE" --retries 3 --report "$report" $resume
status=$?
case $status in
    0) echo "nightly-send: every file stored on $PEER" >&2
       mv "$report" "$STATE/done-$(date +%Y%m%d-%H%M%S).json"
       rm -f "$STATE/previous.json" ;;
    *) echo "nightly-send: exit $status; the next run resumes from $report" >&2 ;;
esac
exit $status
