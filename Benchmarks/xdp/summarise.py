#!/usr/bin/env python3
"""Summarises bench-xdp.sh's results.tsv: medians over rounds, the relay's machine-wide CPU per
relayed datagram (minus the same round's `direct` baseline), ratios to coturn, and the goals.

usage: summarise.py results.tsv SERVER...   (SERVER order as in the run; `direct` is the baseline)
"""
import statistics
import sys
from collections import defaultdict

rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]
servers = sys.argv[2:] or ["direct", "coturn", "sockets", "xdp"]
values = defaultdict(dict)  # (server, load, metric) -> {round: value}
failed = defaultdict(int)
loads = []
for server, rnd, load, metric, value in rows:
    if load not in loads:
        loads.append(load)
    if metric == "failed":
        failed[(server, load)] += 1
    else:
        values[(server, load, metric)][rnd] = float(value)

# The relay's own cost: machine µs per datagram minus the same round's direct run.
for (server, load, metric), per_round in list(values.items()):
    if metric != "machine_us_per_dgram" or server == "direct":
        continue
    base = values.get(("direct", load, metric), {})
    values[(server, load, "relay_us_per_dgram")] = {r: v - base[r] for r, v in per_round.items() if r in base}


def med(server, load, metric):
    v = values.get((server, load, metric))
    return statistics.median(v.values()) if v else None


def spread(server, load, metric):
    v = values.get((server, load, metric))
    return f"{min(v.values()):.3g}–{max(v.values()):.3g}" if v and len(v) > 1 else ""


metrics = [
    ("delivered_pps", "delivered pkt/s", 0),
    ("knee_pps", "zero-loss knee pkt/s", 0),
    ("loss_pct", "loss %", 3),
    ("p50_us", "latency p50 µs", 0),
    ("p99_us", "latency p99 µs", 0),
    ("machine_busy_pct", "machine busy % (2 cores)", 1),
    ("machine_us_per_dgram", "machine CPU µs/dgram", 2),
    ("relay_us_per_dgram", "RELAY CPU µs/dgram (−direct)", 2),
    ("server_cpu_us_per_dgram", "server process µs/dgram", 2),
    ("machine_softirq_s", "machine softirq s", 2),
    ("generator_cpu_pct", "generator CPU % of a core", 0),
    ("fast_path_dgrams", "datagrams relayed by XDP", 0),
    ("sent", "datagrams sent", 0),
]


def show(v, digits):
    return "-" if v is None else f"{v:,.{digits}f}"


others = [s for s in servers if s not in ("direct", "coturn")]
header = f"{'load':<6} {'figure (median)':<30} " + " ".join(f"{s:>12}" for s in servers)
header += " " + " ".join(f"{s + '/coturn':>15}" for s in others)
print()
print(header)
print("-" * len(header))
for load in loads:
    for metric, label, digits in metrics:
        meds = {s: med(s, load, metric) for s in servers}
        if all(m is None for m in meds.values()):
            continue
        base = meds.get("coturn")
        ratios = ["-" if (base in (None, 0) or meds[s] is None) else f"{meds[s] / base:.2f}" for s in others]
        print(f"{load:<6} {label:<30} " + " ".join(f"{show(meds[s], digits):>12}" for s in servers) + " "
              + " ".join(f"{r:>15}" for r in ratios))
    for s in servers:
        if failed[(s, load)]:
            print(f"{load:<6} {s + ' FAILED runs':<30} {failed[(s, load)]:>12}")
        if values.get((s, load, "generator_limited")):
            print(f"{load:<6} {s + ': generator-limited':<30} {len(values[(s, load, 'generator_limited')]):>12} of the rounds")
        if values.get((s, load, "ramp_ended")):
            print(f"{load:<6} {s + ': ramp ended, no loss':<30} {len(values[(s, load, 'ramp_ended')]):>12} of the rounds")

print()
print("spread over rounds (min–max) of the relay CPU per datagram:")
for load in loads:
    for s in servers:
        sp = spread(s, load, "relay_us_per_dgram")
        if sp:
            print(f"  {load:<6} {s:<8} {sp} µs   (per round: "
                  + ", ".join(f"{v:.2f}" for _, v in sorted(values[(s, load, 'relay_us_per_dgram')].items())) + ")")

print()
print("machine busy % per round (paced); a round near 100 % is saturated by something else and says little:")
for srv in servers:
    v = values.get((srv, "paced", "machine_busy_pct"))
    if v:
        print(f"  {srv:<8} " + ", ".join(f"{b:.0f}" for _, b in sorted(v.items())))

print()
print("goals:")
c, x = med("coturn", "paced", "relay_us_per_dgram"), med("xdp", "paced", "relay_us_per_dgram")
if c and x is not None:
    verdict = "met" if x / c <= 0.25 else "MISSED"
    if x <= 0 or c <= 0:
        verdict = "INCONCLUSIVE: a relayed run cost less than its baseline, so noise dominates"
    print(f"  paced relay CPU per datagram, xdp/coturn = {x:.2f}/{c:.2f} = {x / c:.2f}  (goal ≤ 0.25: {verdict})")
c, x = med("coturn", "ramp", "knee_pps"), med("xdp", "ramp", "knee_pps")
if c and x is not None:
    limit = med("direct", "ramp", "knee_pps")
    print(f"  zero-loss knee, xdp/coturn = {x:,.0f}/{c:,.0f} = {x / c:.2f}  (goal ≥ 3: {'met' if x / c >= 3 else 'MISSED'})"
          + (f"; the generator alone (direct) reached {limit:,.0f}" if limit is not None else ""))
g = med("direct", "blast", "delivered_pps")
if g is not None:
    print(f"  the generator's own limit: direct blast {g:,.0f} pkt/s delivered (echoed), direct ramp knee "
          f"{show(med('direct', 'ramp', 'knee_pps'), 0)} pkt/s")
