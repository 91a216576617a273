# The pace of transfers under a policy `limit`, judged from hsmd's own record: the
# starts that `hsm policy status --json` lists per destination (limits.DEST.starts, on
# hsmd's monotonic clock) rather than a stopwatch in the test, which a loaded machine
# slows and which cannot tell the limiter's pace from the scheduler's.
# Sourced after lib.sh.

# pace_stats DEST RATE N SIZE: reads one `policy status --json` answer on stdin and
# prints "COUNT EXCESS BURST AVG" for the last N starts to DEST at RATE (bytes/s) of
# SIZE bytes each: COUNT how many there were (N when all are there), EXCESS the most
# any stretch of them started beyond the rate (the largest sum of bytes[i..j-1] minus
# RATE * (t_j - t_i), over every i < j: a token bucket keeps it at most one burst),
# BURST the burst hsmd allows at that rate, AVG the bytes per second from the first
# start to the last (the bytes started before the last over the time between).
pace_stats() {
	python3 -c '
import json, sys
dest, rate, n, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
st = None
for line in sys.stdin:
    try:
        o = json.loads(line)
    except ValueError:
        continue
    if isinstance(o, dict) and "limits" in o:
        st = o
        break
    if isinstance(o, dict) and isinstance(o.get("result"), dict) and "limits" in o["result"]:
        st = o["result"]
        break
if st is None or dest not in st["limits"]:
    print("0 0 0 0")
    sys.exit(0)
lim = st["limits"][dest]
s = [e for e in lim["starts"] if e["rate"] == rate and e["bytes"] == size][-n:]
excess = 0.0
for i in range(len(s)):
    acc = 0
    for j in range(i + 1, len(s)):
        acc += s[j - 1]["bytes"]
        excess = max(excess, acc - rate * (s[j]["t"] - s[i]["t"]))
span = s[-1]["t"] - s[0]["t"] if len(s) > 1 else 0
avg = sum(e["bytes"] for e in s[:-1]) / span if span > 0 else 0
print(len(s), int(excess), lim["burst"] or 0, int(avg))
' "$@"
}
