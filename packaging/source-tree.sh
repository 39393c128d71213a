# source-tree.sh: what build-deb.sh and build-rpm.sh share (sourced, not run).
#
# The packages are built from the files `make` would build from: in a git checkout,
# those git knows or would add (tracked, and untracked unless ignored), as they are in
# the work tree; elsewhere (an unpacked tarball), every file but build outputs and
# node_modules.
# SOURCE_DATE_EPOCH is the last commit's time (or kept when set), so that the tarballs,
# the changelog and the packages do not change with the time of the build.

if [ -z "${SOURCE_DATE_EPOCH:-}" ]; then
    SOURCE_DATE_EPOCH=$(git -C "$top" log -1 --format=%ct 2>/dev/null || date +%s)
fi
export SOURCE_DATE_EPOCH

# lh_copy_tree TOP DEST: copies the source files of TOP into the existing directory DEST.
lh_copy_tree() {
    local from=$1 to=$2
    if git -C "$from" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
        # Deleted-but-tracked files are listed too: keep those that exist.
        (cd "$from" && git ls-files -z --cached --others --exclude-standard |
            while IFS= read -r -d '' f; do
                if [ -e "$f" ] || [ -L "$f" ]; then printf '%s\0' "$f"; fi
            done | sort -zu | tar -cf - --null --no-recursion -T -) | tar -xf - -C "$to"
    else
        (cd "$from" && tar -cf - --exclude='./build*' --exclude=./.git --exclude=node_modules .) |
            tar -xf - -C "$to"
    fi
}

# lh_tarball DIR NAME FILE: FILE = a gzipped tarball of DIR/NAME with NAME/ at its top,
# the same bytes for the same files (sorted, fixed owner and times).
lh_tarball() {
    local dir=$1 name=$2 file=$3
    tar -C "$dir" --sort=name --mtime="@$SOURCE_DATE_EPOCH" --owner=0 --group=0 \
        --numeric-owner --format=gnu -cf - "$name" | gzip -n -9 >"$file.tmp"
    mv "$file.tmp" "$file"
}
