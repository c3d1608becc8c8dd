#!/bin/sh
# Retrieve the studies of a list of accession numbers (one per line) from PEER into OUT,
# as plain files, with a JSON summary on stdout. Exit 0 when every study arrived whole.
#
#   examples/move-accessions.sh PACS accessions.txt ./retrieved > summary.json
#
# PEER must know our AE title ([local] ae_title, port) as a move destination; a node with
# retrieve = "get" uses C-GET instead and needs no inbound port.
set -eu
PEER=${1:?usage: move-accessions.sh PEER LIST OUT}
LIST=${2:?usage: move-accessions.sh PEER LIST OUT}
OUT=${3:?usage: move-accessions.sh PEER LIST OUT}
exec dcmtool move "$PEER" --from "$LIST" --from-key AccessionNumber -o "$OUT" --json
