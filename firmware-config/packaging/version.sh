#!/bin/sh
# Prints the package version from git, in an order dpkg agrees with:
#   tag v1.2.3 on HEAD          1.2.3
#   5 commits after v1.2.3      1.2.3+5.gabc1234   (after 1.2.3, before 1.2.4)
#   no release tag yet          0.0.0~git20261204.abc1234 (commit date: later builds sort later)
#   uncommitted changes         …+dirty is not added: the version names a commit
set -eu
if d=$(git describe --tags --match 'v[0-9]*' --long 2>/dev/null); then
  # v1.2.3-5-gabc1234 (the tag itself may contain '-', e.g. v1.2.3-rc1)
  n=${d%-g*}; hash=${d##*-g}; count=${n##*-}; tag=${n%-*}; tag=${tag#v}
  tag=$(printf %s "$tag" | sed 's/-/~/g; s/[^0-9A-Za-z.+~]/./g')
  if [ "$count" = 0 ]; then echo "$tag"; else echo "$tag+$count.g$hash"; fi
else
  echo "0.0.0~git$(git log -1 --format=%cd --date=format:%Y%m%d%H%M%S).$(git rev-parse --short=7 HEAD)"
fi
