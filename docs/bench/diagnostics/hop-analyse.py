#!/usr/bin/env python3
"""hop-analyse.py DIR: joins the four logs written by a hop-log.patch build (vu_rx, vu_tx, vh_rx,
vh_tx: TSC and running packet count per port call) by packet number and prints the median
of each part of a packet's round trip over the second half of the logged range (ours<->ours,
--tx-first: the virtio-user sends packet k+32 after receiving packet k). Needs numpy."""
import numpy as np, sys, os
d=sys.argv[1]
def load(n):
    a=np.fromfile(os.path.join(d,n+'.bin'),dtype='<u8').reshape(-1,2); return a[:,0].astype(np.int64), a[:,1].astype(np.int64)
S={n:load(n) for n in ('vu_rx','vu_tx','vh_rx','vh_tx')}
def when(n,k):
    t,c=S[n]; i=np.searchsorted(c,k,side='right'); ok=i<len(c); return np.where(ok,t[np.minimum(i,len(c)-1)],-1), ok & (i>0)
lo=max(S[n][1][0] for n in S)+64; hi=min(S[n][1][-1] for n in S)-64
k=np.arange(lo+(hi-lo)//2, hi-40)
a,oa=when('vu_tx',k); b,ob=when('vh_rx',k); c,oc=when('vh_tx',k); e,oe=when('vu_rx',k); f,of=when('vu_tx',k+32)
m=oa&ob&oc&oe&of
A=(b-a)[m];B=(c-b)[m];C=(e-c)[m];D=(f-e)[m]
g=lambda x: f"{np.median(x)/2.596:7.0f}"
loop=np.median(A+B+C+D)/2.596
print(f"ns median: vu->vh signal {g(A)} | vh work {g(B)} | vh->vu signal {g(C)} | vu work {g(D)} | loop {loop:.0f} ns -> {32/loop*1e3:.1f} Mpps | n={m.sum()} bursts vh_rx {len(S['vh_rx'][0])} pk/burst vh {np.diff(S['vh_rx'][1]).mean():.1f} vu {np.diff(S['vu_rx'][1]).mean():.1f}")
