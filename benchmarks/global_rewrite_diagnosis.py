"""Which requests the global layer rewrites in an A/B, and what the logs say about them: the most
frequent (request -> rewrite) pairs it served, with each side's turns, successes and meanings in the
global layer. How the hard world's broken first attempts were traced to requests that fail and that
no retry fixes (docs/results.md, "Rewrites on hard voices").

Usage: python benchmarks/global_rewrite_diagnosis.py WORLD_DIR DIR DAYS   (DIR holds the online model as DIR/model)
"""
import sys

import torch
from collections import Counter
torch.set_num_threads(1)
from pathlib import Path
from selflearn.online import OnlineRewriter
from selflearn.world.ab import ab_arms
from selflearn.world.build import World
from selflearn.world.simulate import SimConfig, load_nlu_for
W=Path(sys.argv[1]); D=Path(sys.argv[2]); days=int(sys.argv[3])
world=World.load(W)
rw=OnlineRewriter.load(D/"model",layers=("table","global"))
log=[]
orig=rw.decide
def wrap(q, **kw):
    d=orig(q, **kw)
    if d.source in ("global","phonetic"):
        log.append((q,d.rewrite,(kw.get("context") or {}).get("asr_confidence")))
    return d
rw.decide=wrap
res=ab_arms(world,SimConfig(users=2000,days=days,seed=0,first_day=14),{"none":None,"table+global":rw},nlu_loader=load_nlu_for(W))
r=res["vs_control"]["table+global"]
print({k:r[k] for k in ("wins","losses","losses_broken")}, r["rewrites"]["by_context"]["confidence"])
g=rw.global_
c=Counter((q,n) for q,n,_ in log)
for (q,n),k in c.most_common(40):
    i=g.row.get(q); j=g.row.get(n)
    qs=(int(g.turns[i]),int(g.successes[i]), g.meanings[g.meaning[i]] if g.meaning[i]>=0 else None, g.meanings[g.meaning_heard[i]] if g.meaning_heard[i]>=0 else None) if i is not None else None
    ns=(int(g.turns[j]),int(g.successes[j]), g.meanings[g.meaning[j]]) if j is not None else None
    print(k, repr(q), "->", repr(n), "| q", qs, "| new", ns)
