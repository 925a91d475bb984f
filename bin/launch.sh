# bin/stasis started by its path runs this (sh): `launch.sh STASIS ARGS...`.
#
# runc and Podman start their criu twice per command, the first time only to ask its version
# (`swrk FD`, one VERSION request on the socket). Starting Node for that costs more than the
# rest of a small restore; the answer is a constant, so it is given from here: the first record
# is read with one read(2) (dd: a record larger than the buffer would lose its end; 8 MiB holds
# any, see bin/swrk-version.cjs), a VERSION request answered with the bytes runtime-hook/version.ts
# encodes (test/runtime-hook/swrk.test.ts checks both), anything else handed to stasis in a file
# (STASIS_SWRK_FIRST, which stasis reads and removes). When the record cannot be read here (a
# descriptor dash cannot name, a non-blocking socket...) nothing is taken and stasis reads it.
self=$1
shift
unset NODE_EXTRA_CA_CERTS
if [ "$#" -eq 2 ] && [ "$1" = swrk ]; then
  case $2 in
    # (dash names descriptors 0-9 only: `<&12` is a syntax error that ends the shell unanswered)
    [0-9])
      if rec=$(mktemp "${TMPDIR:-/tmp}/stasis-swrk.XXXXXX"); then
        if dd bs=8M count=1 of="$rec" <&"$2" 2>/dev/null; then
          case $(od -An -tx1 -N3 "$rec") in
            '') rm -f "$rec"; exit 1 ;; # the client is gone
            ' 08 0a')
              rm -f "$rec"
              printf '\010\012\020\001\122\004\010\004\020\002' >&"$2" || exit 1
              exit 0 ;;
          esac
          STASIS_SWRK_FIRST=$rec
          export STASIS_SWRK_FIRST
        else
          rm -f "$rec"
        fi
      fi ;;
  esac
fi
exec node "$self" "$@"
