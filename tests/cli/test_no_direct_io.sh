#!/usr/bin/env bash
# test_no_direct_io.sh — every file operation of the library goes through the
# vfs (src/io/vfs.h), so tests can substitute failing and crashing ones. This
# fails if any file under src/ other than src/io/vfs_posix.c calls a file
# system call directly.
#
# How: comments and string/char literals are blanked first (so prose such as
# "we open(2) it" is fine), then a call is a listed name followed by "(" and
# not preceded by an identifier character, "." or "->" (so evs__fread(),
# fopen_like(), vfs->open() and ops.write() are not calls of the syscalls).
# The scan is checked against vfs_posix.c itself, which must be caught, so a
# broken pattern cannot pass silently.
#
# Usage: test_no_direct_io.sh [BUILD_DIR]   (the build dir is not needed)
set -u

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
allowed="src/io/vfs_posix.c"
if [ ! -f "$root/$allowed" ]; then
    echo "FAIL: $allowed not found under $root" >&2
    exit 1
fi

calls='open|open64|openat|openat2|creat|pread|pread64|preadv|pwrite|pwrite64|pwritev|read|readv|write|writev|fsync|fdatasync|syncfs|sync_file_range|ftruncate|truncate|rename|renameat|renameat2|unlink|unlinkat|rmdir|mkdir|mkdirat|opendir|fdopendir|flock|fopen|fdopen|freopen'

# Print "file:line: text" for every direct call in the given files.
scan() {
    awk -v calls="$calls" '
    BEGIN { re = "(^|[^_A-Za-z0-9>.])(" calls ")[ \t]*\\(" }
    FNR == 1 { incomment = 0 }
    {
        line = $0; out = ""; n = length(line); i = 1
        while (i <= n) {
            c = substr(line, i, 1); c2 = substr(line, i, 2)
            if (incomment) {
                if (c2 == "*/") { incomment = 0; i += 2 } else i++
                continue
            }
            if (c2 == "/*") { incomment = 1; out = out " "; i += 2; continue }
            if (c2 == "//") break
            if (c == "\"" || c == "\x27") {
                q = c; i++
                while (i <= n && substr(line, i, 1) != q) {
                    if (substr(line, i, 1) == "\\") i++
                    i++
                }
                out = out q q; i++
                continue
            }
            out = out c; i++
        }
        if (out ~ re) printf "%s:%d: %s\n", FILENAME, FNR, $0
    }' "$@"
}

cd "$root" || exit 1

# Self-check: the one allowed file does call these; the scan must see it.
if [ -z "$(scan "$allowed")" ]; then
    echo "FAIL: the scan finds no calls in $allowed; the pattern is broken" >&2
    exit 1
fi

mapfile -t files < <(find src -type f \( -name '*.c' -o -name '*.h' \) ! -path "$allowed" | sort)
if [ "${#files[@]}" -eq 0 ]; then
    echo "FAIL: no sources found under $root/src" >&2
    exit 1
fi

hits=$(scan "${files[@]}")
if [ -n "$hits" ]; then
    echo "FAIL: direct file system calls outside $allowed (use the evs_vfs in src/io/vfs.h):" >&2
    echo "$hits" >&2
    exit 1
fi
echo "ok: ${#files[@]} files under src/ do file I/O only through the vfs"
