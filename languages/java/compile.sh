#!/bin/sh
# Compiles every .java file ($@, the entry first) and packs the classes into main.jar: the
# compile stage can only carry single regular files to the run stage, and a jar is one file
# the JVM loads directly. Usage: compile.sh Entry.java [Other.java...]
set -e
entry=$1
javac=/usr/lib/jvm/java-17-openjdk-amd64/bin/javac

# javac is a JVM too: the same fast-start flags as the run stage, a heap under the compile
# memory limit. diags.layout adds the column to javac's one-line "file:line: error: msg" head
# (the caret line under it cannot be read line by line); -Xmaxerrs keeps every error.
"$javac" -J-XX:+UseSerialGC -J-XX:TieredStopAtLevel=1 -J-XX:CICompilerCount=1 -J-Xshare:auto \
  -J-XX:-UsePerfData -J-Xss8m -J-Xmx512m -J-XX:MaxMetaspaceSize=192m \
  '-XDdiags.layout=%f:%l:%c:%_%p%L%m' -Xmaxerrs 500 -Xlint:none -proc:none \
  -encoding UTF-8 -d /tmp/classes "$@"

# Main-Class: the entry file's class. Its `package x.y;` line (if any) names the directory
# javac put it in; failing that, wherever javac wrote a class of that name.
stem=$(basename "$entry" .java)
pkg=$(sed -n 's/^[[:space:]]*package[[:space:]]\{1,\}\([A-Za-z0-9_$.]*\)[[:space:]]*;.*/\1/p' "$entry" | head -n 1)
main=${pkg:+$pkg.}$stem
cd /tmp/classes
if [ ! -f "$(echo "$main" | tr . /).class" ]; then
  found=$(find . -name "$stem.class" | sort | head -n 1)
  if [ -n "$found" ]; then main=$(echo "${found#./}" | sed 's/\.class$//; s|/|.|g'); fi
fi

mkdir -p /tmp/meta/META-INF
printf 'Manifest-Version: 1.0\nMain-Class: %s\nCreated-By: polyrun\n' "$main" \
  >/tmp/meta/META-INF/MANIFEST.MF
# The manifest first, as `jar` writes it; -X -D: no extra attributes, no directory entries.
(cd /tmp/meta && zip -q -X -D /work/main.jar META-INF/MANIFEST.MF)
zip -q -r -X -D /work/main.jar .
