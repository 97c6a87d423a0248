"""Where the tasks ran: tasks and busy time per Ray node and per actor (one actor per GPU).

Reads the `node` / `actor` columns of the results (absent for runs made before they existed, or
run in-process) and `run.json`'s `nodes` (address, declared GPUs, the GPU ids of each actor).
Busy time is the sum of the tasks' own `seconds`; a node that died mid-run is marked so.
"""

from __future__ import annotations

import pandas as pd

from reports.store import Store, _missing
from reports.tables import Cell, Table


def _short(node_or_actor) -> str:
    return str(node_or_actor)[:8]


def _node_label(nid: str, info: dict) -> str:
    where = info.get("host") or info.get("ip") or ""
    if info.get("ip") and info.get("host"):
        where = f"{info['host']} ({info['ip']})"
    return f"{_short(nid)} {where}".strip()


def placement_tables(store: Store) -> list[Table]:
    df = store.tasks
    if "node" not in df.columns or df["node"].map(_missing).all():
        return []
    ran = df[~df["node"].map(_missing)].copy()
    ran["busy"] = pd.to_numeric(ran["seconds"], errors="coerce").fillna(0.0)
    nodes = {n.get("node"): n for n in (store.run_info.get("nodes") or []) if isinstance(n, dict)}
    gpus_of_actor = {a.get("actor"): a.get("gpus") for n in nodes.values() for a in (n.get("actors") or [])}
    total = ran["busy"].sum() or 1.0

    node_rows = []
    for nid, g in ran.groupby("node", sort=True):
        info = nodes.get(nid, {})
        gpus = info.get("gpus")
        state = "" if info.get("alive", True) else " (lost during the run)"
        node_rows.append([Cell(_node_label(nid, info) + state), Cell("–" if gpus is None else f"{gpus:g}"),
                          Cell(str(g["actor"].nunique())), Cell(str(len(g))), Cell(f"{g['busy'].sum():.1f}"),
                          Cell(f"{100 * g['busy'].sum() / total:.0f} %")])
    actor_rows = []
    for (nid, aid), g in ran.groupby(["node", "actor"], sort=True):
        gpu = gpus_of_actor.get(aid)
        actor_rows.append([Cell(_short(nid)), Cell(_short(aid)), Cell(", ".join(gpu) if gpu else "–"),
                           Cell(str(len(g))), Cell(f"{g['busy'].sum():.1f}"), Cell(f"{g['busy'].mean():.2f}")])
    note = (f"{len(ran)} of {len(df)} tasks carry the node and actor that ran them; busy time is the sum of "
            "their own seconds (retried attempts cut short by a lost node are not counted).")
    return [Table(key="placement_nodes", title="Tasks per node",
                  columns=["node", "GPUs", "actors", "tasks", "busy s", "share"], rows=node_rows, notes=[note]),
            Table(key="placement_actors", title="Tasks per actor",
                  columns=["node", "actor", "GPU", "tasks", "busy s", "s / task"], rows=actor_rows)]
