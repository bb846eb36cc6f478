# Sourced by ci/fresh-root.sh and ci/vm-gpio.sh, which both build Debian
# bookworm roots from the mirror this machine's apt already uses.

sources_uri() {  # SUITE: the host's URI for that suite (deb822 first, then one-line)
  local u
  u=$(awk -v s="$1" 'BEGIN{RS=""}
        /(^|\n)[ \t]*Enabled:[ \t]*(no|false)/ {next}
        /(^|\n)[ \t]*Types:[^\n]*deb([ \t]|\n|$)/ {
          if (!match($0, /(^|\n)[ \t]*Suites:[^\n]*/)) next
          line=substr($0,RSTART,RLENGTH); n=split(line, w, /[ \t\n]+/); ok=0
          for (i=1;i<=n;i++) if (w[i]==s) ok=1
          if (!ok) next
          if (match($0, /(^|\n)[ \t]*URIs:[ \t]*[^ \t\n]+/)) {
            u=substr($0,RSTART,RLENGTH); sub(/^\n?[ \t]*URIs:[ \t]*/,"",u); print u; exit } }' \
        /etc/apt/sources.list.d/*.sources 2>/dev/null || true)
  [ -n "$u" ] || u=$(grep -hE "^deb[[:space:]]+(\[[^]]*\][[:space:]]+)?[a-z+]+://[^ ]+[[:space:]]+$1[[:space:]]" \
        /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null \
        | sed -E 's/^deb[[:space:]]+(\[[^]]*\][[:space:]]+)?//' | awk '{print $1; exit}' || true)
  printf '%s' "$u"
}
