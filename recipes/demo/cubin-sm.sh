#!/bin/sh
# cubin-sm.sh FILE... - print "FILE SM" for each CUDA ELF (cubin), read from
# the ELF header: EI_OSABI 0x41 (CUDA), and the SM in e_flags (bits 8-15 for
# ABI version >= 8, as nvcc 12.8+ writes; bits 0-7 before). Exit 1 if a file
# is not a cubin.
set -eu
rc=0
for f in "$@"; do
    magic=$(od -An -c -N4 "$f" | tr -d ' ')
    osabi=$(od -An -tu1 -j7 -N1 "$f" | tr -d ' ')
    abiv=$(od -An -tu1 -j8 -N1 "$f" | tr -d ' ')
    class=$(od -An -tu1 -j4 -N1 "$f" | tr -d ' ')
    if [ "$magic" != '177ELF' ] || [ "$osabi" != 65 ] || [ "$class" != 2 ]; then
        echo "$f: not a 64-bit CUDA ELF (cubin)" >&2
        rc=1
        continue
    fi
    flags=$(od -An -tu4 -j48 -N4 "$f" | tr -d ' ')
    if [ "$abiv" -ge 8 ]; then sm=$(((flags >> 8) & 255)); else sm=$((flags & 255)); fi
    echo "$f $sm"
done
exit $rc
