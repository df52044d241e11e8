#!/usr/bin/env bash
# Runs each fuzz target of tests/fuzz (proptest, stable toolchain) for a bounded time and prints
# the cases run per target. Not part of .ci/run: `cargo test` runs the same targets for a few
# cases only.
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]
#
# SECONDS_PER_TARGET defaults to 180; targets are fhirpath, consent, document_intake,
# token_request, conceptmap_translate, xml_parse, xml_round_trip (default: all). Each runs in
# batches of PROPTEST_CASES (default 256) until its time is spent; a target still running a
# minute after that (a hang) is stopped and counted as failed, as is one that panics or
# crashes. A failing case is shrunk and printed: fix it in the module concerned and add its
# regression to tests/fuzz/regressions.rs.
set -uo pipefail
cd "$(dirname "$0")/.."

SECONDS_PER_TARGET=${1:-180}
shift || true
TARGETS=("$@")
if [ ${#TARGETS[@]} -eq 0 ]; then
  TARGETS=(fhirpath consent document_intake token_request conceptmap_translate xml_parse xml_round_trip)
fi
export PROPTEST_CASES=${PROPTEST_CASES:-256}
export FUZZ_SECONDS=$SECONDS_PER_TARGET

cargo test --locked --quiet --test fuzz --no-run || exit 1

FAILED=()
SUMMARY=()
for target in "${TARGETS[@]}"; do
  echo "== fuzz_$target (${SECONDS_PER_TARGET} s)"
  log=$(mktemp)
  case $target in
    fhirpath) name=fhirpath::fuzz_fhirpath ;;
    consent) name=consent::fuzz_consent ;;
    document_intake) name=intake::fuzz_document_intake ;;
    token_request) name=token::fuzz_token_request ;;
    conceptmap_translate) name=translate::fuzz_conceptmap_translate ;;
    xml_parse) name=xml::fuzz_xml_parse ;;
    xml_round_trip) name=xml::fuzz_xml_round_trip ;;
    *) echo "unknown target $target" >&2; exit 2 ;;
  esac
  timeout --kill-after=10 $((SECONDS_PER_TARGET + 60)) \
    cargo test --locked --quiet --test fuzz -- --exact --nocapture "$name" >"$log" 2>&1
  rc=$?
  grep -a "^fuzz " "$log" || true
  if [ $rc -ne 0 ]; then
    if [ $rc -eq 124 ] || [ $rc -eq 137 ]; then
      echo "   stopped: still running a minute after its time (a hang?)"
    fi
    tail -n 60 "$log"
    FAILED+=("$target")
  fi
  SUMMARY+=("$(grep -a "^fuzz " "$log" | tail -1)")
  rm -f "$log"
done

echo "== summary"
printf '%s\n' "${SUMMARY[@]}"
if [ ${#FAILED[@]} -ne 0 ]; then
  echo "FAILED: ${FAILED[*]}"
  exit 1
fi
