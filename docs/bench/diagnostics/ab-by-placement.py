#!/usr/bin/env python3
"""ab-by-placement.py LOG [A/B ...]: per-placement medians (same, cross, moved by the three
in-window probes against 150 ns) of an ab-placed.py log, and paired A/B ratios over the rounds
in which both cells ran in the same placement."""
import re,collections,statistics,sys
d=collections.defaultdict(lambda: collections.defaultdict(list))
rounds=collections.defaultdict(dict)
for l in open(sys.argv[1]):
    m=re.match(r"(\d+) (\S+) .*Mpps\s+([\d.]+) .*\| vh ([\d.]+) \| vu ([\d.]+) \| in (\S+)",l)
    if not m: continue
    pr=[float(x) for x in m[6].split(",") if x]
    cls="same" if all(p<150 for p in pr) else "cross" if all(p>=150 for p in pr) else "moved"
    d[m[2]][cls].append((float(m[3]),float(m[4]),float(m[5])))
    rounds[int(m[1])][m[2]]=(float(m[3]),cls)
for k in sorted(d):
    for c in ("same","cross","moved"):
        v=d[k][c]
        if v: print(f"{k:4} {c:5} n={len(v)} med {statistics.median(x for x,_,_ in v):5.1f} Mpps {sorted(x for x,_,_ in v)} vh {sorted(round(y) for _,y,_ in v)} vu {sorted(round(z) for _,_,z in v)}")
for a,b in [p.split("/") for p in sys.argv[2:]]:
    for c in ("same","cross"):
        rs=[rounds[r][a][0]/rounds[r][b][0] for r in rounds if a in rounds[r] and b in rounds[r] and rounds[r][a][1]==c and rounds[r][b][1]==c]
        if rs: print(f"{a}/{b} {c}: median {statistics.median(rs):.3f} n={len(rs)} {[round(x,2) for x in rs]}")
