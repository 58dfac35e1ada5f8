#!/usr/bin/env python3
"""Line-by-line comparison of `palisade reach` with np-guard's
network-config-analyzer (NCA, `pip install network-config-analyzer`).

The tools cut the outside address space differently (Palisade merges
adjacent ranges that get the same connections and joins them with commas;
NCA prints one fixed range per line), so both outputs are reduced to a
canonical form before comparing:
  - workload pairs: (src, dst, protocol) -> merged port ranges;
  - external peers: (direction, workload, protocol) -> for every elementary
    address interval (cut at both tools' boundaries), merged port ranges.
IPv6 is left out (NCA prints it only with --print_ipv6). Prints the
differences and exits 1 if there are any.

usage: compare_nca.py PALISADE_TXT NCA_TXT
"""
import ipaddress
import re
import sys
from collections import defaultdict

FULL = [(1, 65535)]


def port_list(text):
    out = []
    for part in text.split(","):
        lo, _, hi = part.strip().partition("-")
        out.append((int(lo), int(hi or lo)))
    return out


def palisade_conns(conn):
    if conn == "All Connections":
        return {p: FULL for p in ("TCP", "UDP", "SCTP")}
    out = defaultdict(list)
    for proto, plist in re.findall(r"(TCP|UDP|SCTP)(?: ([0-9,\-]+?))?(?=,(?:TCP|UDP|SCTP)|$)", conn):
        out[proto] += port_list(plist) if plist else FULL
    return out


def nca_conns(conn):
    if conn.lower() == "all connections":
        return {p: FULL for p in ("TCP", "UDP", "SCTP")}
    out = defaultdict(list)
    for protos, plist in re.findall(r"\{protocols:([A-Z, ]+?)(?:,dst_ports:([0-9,\-]+))?\}", conn):
        for proto in (p.strip() for p in protos.split(",")):
            out[proto] += port_list(plist) if plist else FULL
    return out


def merge(spans):
    spans = sorted(spans)
    out = []
    for lo, hi in spans:
        if out and lo <= out[-1][1] + 1:
            out[-1] = (out[-1][0], max(out[-1][1], hi))
        else:
            out.append((lo, hi))
    return tuple(out)


def ip_range(text):
    lo, _, hi = text.partition("-")
    return int(ipaddress.ip_address(lo)), int(ipaddress.ip_address(hi or lo))


def external_ranges(ep):
    """Address ranges of an external endpoint, or None for a workload."""
    if ep.endswith("[External]"):
        parts = ep[: -len("[External]")].split(",")
    elif "[" in ep:
        return None
    else:
        parts = [ep]
    return [ip_range(p) for p in parts if ":" not in p]  # IPv6 left out


def load(path, parse_conn):
    pairs = defaultdict(list)
    external = defaultdict(list)  # (dir, workload, proto) -> [(ip_lo, ip_hi, port_lo, port_hi)]
    for line in open(path, encoding="utf-8"):
        line = line.rstrip("\n")
        if " => " not in line or " : " not in line:
            continue
        pair, conn = line.split(" : ", 1)
        src, dst = pair.split(" => ", 1)
        conns = parse_conn(conn)
        src_ips, dst_ips = external_ranges(src), external_ranges(dst)
        for proto, spans in conns.items():
            if src_ips is None and dst_ips is None:
                pairs[(src, dst, proto)] += spans
            elif src_ips is not None:
                for lo, hi in src_ips:
                    external[("in", dst, proto)] += [(lo, hi, p, q) for p, q in spans]
            else:
                for lo, hi in dst_ips:
                    external[("out", src, proto)] += [(lo, hi, p, q) for p, q in spans]
    return {k: merge(v) for k, v in pairs.items()}, external


def canonical_external(mine, theirs):
    """Both tools' external facts over the same elementary address intervals."""
    out_mine, out_theirs = {}, {}
    for key in set(mine) | set(theirs):
        cuts = set()
        for lo, hi, _, _ in mine.get(key, []) + theirs.get(key, []):
            cuts.add(lo)
            cuts.add(hi + 1)
        cuts = sorted(cuts)
        for side, out in ((mine, out_mine), (theirs, out_theirs)):
            rects = side.get(key, [])
            for a, b in zip(cuts, cuts[1:]):
                ports = merge([(p, q) for lo, hi, p, q in rects if lo <= a and b - 1 <= hi])
                if ports:
                    out[key + (a, b - 1)] = ports
    return out_mine, out_theirs


def report(label, mine, theirs):
    keys = sorted(set(mine) | set(theirs), key=str)
    diff = [(k, mine.get(k), theirs.get(k)) for k in keys if mine.get(k) != theirs.get(k)]
    print(f"{label}: palisade {len(mine)}, nca {len(theirs)}, differing {len(diff)}")
    for k, a, b in diff[:15]:
        print(f"    {k}: palisade={a} nca={b}")
    return len(diff)


def main():
    mine_pairs, mine_ext = load(sys.argv[1], palisade_conns)
    their_pairs, their_ext = load(sys.argv[2], nca_conns)
    ext_mine, ext_theirs = canonical_external(mine_ext, their_ext)
    bad = report("workload pairs x protocol", mine_pairs, their_pairs)
    bad += report("external intervals x direction x protocol", ext_mine, ext_theirs)
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
