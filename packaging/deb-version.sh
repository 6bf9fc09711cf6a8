#!/bin/sh
# Prints the Debian version of this tree: a tag such as v1.2.3 gives 1.2.3
# (1.2.3+4+gabcdef past it); an untagged tree 0~git<commit date>.<hash>, so
# later commits sort higher. A dirty tree adds +dirty.
v=$(git describe --tags --always --dirty 2>/dev/null | sed 's/^v//; s/-dirty$/+dirty/; s/-/+/g')
case $v in
[0-9]*) echo "$v" ;;
*) echo "0~git$(git log -1 --format=%cd --date=format:%Y%m%d%H%M%S 2>/dev/null).${v:-unknown}" ;;
esac
