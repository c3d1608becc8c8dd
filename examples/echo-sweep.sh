#!/bin/sh
# C-ECHO every node of the config file at once; one line per node, exit 0 only when all
# answered (7 when some did not, the first failure's code when none did).
#
#   examples/echo-sweep.sh          # or from cron, mailing the output when it fails
set -u
out=$(dcmtool echo --all --json)
status=$?
printf '%s\n' "$out" | python3 -c '
import json, sys
for result in json.load(sys.stdin):
    peer, where = result["peer"], "%s:%s" % (result["host"], result["port"])
    if result["ok"]:
        state = "ok %.1f ms" % result["rtt_ms"]["avg"]
    else:
        state = "FAILED: " + result["error"]["message"]
    print("%-16s %-22s %s" % (peer, where, state))
'
exit $status
