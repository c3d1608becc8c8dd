#!/bin/sh
# Yesterday's CT studies on PEER as CSV (one row per study), e.g. for a daily report.
#
#   examples/yesterday-ct.sh PACS > yesterday-ct.csv
set -eu
PEER=${1:?usage: yesterday-ct.sh PEER}
exec dcmtool find "$PEER" -k StudyDate=yesterday -k ModalitiesInStudy=CT \
    -k PatientID -k PatientName -k AccessionNumber -k StudyDescription -k StudyTime --csv
