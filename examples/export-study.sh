#!/bin/sh
# Export one study from PEER to media: retrieve it (the node's retrieve method, move or get),
# write OUT/DICOMDIR and OUT/DICOM/... for a CD (STD-GEN-CD), and check the result.
#
#   examples/export-study.sh PACS 1.2.840.113619.2.1 /media/usb
#
# Exit 0 when the file set is written and verifies; dcmtool's exit codes otherwise.
set -eu
PEER=${1:?usage: export-study.sh PEER STUDY_UID OUT}
STUDY=${2:?usage: export-study.sh PEER STUDY_UID OUT}
OUT=${3:?usage: export-study.sh PEER STUDY_UID OUT}
dcmtool dicomdir create "$OUT" --peer "$PEER" --study "$STUDY" --profile STD-GEN-CD
dcmtool dicomdir verify "$OUT/DICOMDIR" --profile STD-GEN-CD
dcmtool dicomdir ls "$OUT/DICOMDIR"
