#!/usr/bin/env python3
"""Compare what certctl scan, testssl.sh and sslscan found (bench/scan-vs-testssl.sh).

Usage: scan-compare.py WORKDIR ENDPOINT...
WORKDIR holds, per endpoint, NAME.certctl.json, NAME.testssl.json,
NAME.sslscan.xml, and times.txt ("NAME certctl_s testssl_s sslscan_s").
Prints a timing table, then per endpoint what each tool found and every
disagreement. A tool whose output is missing or unreadable shows "n/a".
"""
import json
import os
import re
import sys
import xml.etree.ElementTree as ET

PROTOS = ["SSLv3", "TLS1.0", "TLS1.1", "TLS1.2", "TLS1.3"]


def load_certctl(path):
    try:
        d = json.load(open(path))[0]
    except Exception:
        return None
    names = {"SSL 3.0": "SSLv3", "TLS 1.0": "TLS1.0", "TLS 1.1": "TLS1.1", "TLS 1.2": "TLS1.2", "TLS 1.3": "TLS1.3"}
    checks = {f["check"] for f in d.get("findings") or []}
    cert = d.get("certificate") or {}
    mtls = d.get("mtls") or {}
    return {
        "grade": d.get("grade") or "-",
        "error": d.get("error", ""),
        "protocols": {names[p["name"]] for p in d.get("protocols") or [] if p.get("supported") and p["name"] in names},
        "ciphers": {c["id"] for c in d.get("cipher_suites") or []},
        "expired": "certificate.expired" in checks,
        "trusted": bool(d.get("trusted")),
        "name_match": bool(d.get("name_match")),
        "self_signed": "certificate.self_signed" in checks,
        "key": f'{cert.get("key_type", "?")} {cert.get("key_bits", "?")}' if cert else "-",
        "client_auth_required": bool(mtls.get("required")),
        "anon_suites": "cipher.anonymous" in checks,
        "secure_renegotiation": bool((d.get("features") or {}).get("secure_renegotiation")),
        "fallback_scsv": bool((d.get("features") or {}).get("fallback_scsv")) if c_below12(d) else "n/a",
        "checks": sorted(checks),
    }


def c_below12(d):
    """Whether the endpoint offers a version below TLS 1.2 (TLS_FALLBACK_SCSV only matters then)."""
    return any(p.get("supported") and p["name"] in ("SSL 3.0", "TLS 1.0", "TLS 1.1") for p in d.get("protocols") or [])


def load_testssl(path):
    try:
        items = json.load(open(path))
    except Exception:
        return None
    by = {}
    for it in items:
        by.setdefault(it["id"], []).append(it)

    def first(i):
        v = by.get(i)
        return v[0] if v else {"finding": "", "severity": ""}

    ids = {"SSLv3": "SSLv3", "TLS1": "TLS1.0", "TLS1_1": "TLS1.1", "TLS1_2": "TLS1.2", "TLS1_3": "TLS1.3"}
    protos = set()
    for k, v in ids.items():
        f = first(k)["finding"]
        if "offered" in f and "not offered" not in f:
            protos.add(v)
    ciphers = set()
    for k in by:
        m = re.fullmatch(r"cipher(?:-tls1(?:_[0-9])?|-ssl3)?_x([0-9a-f]+)", k)
        if m:
            ciphers.add(int(m.group(1), 16))
    exp = first("cert_expirationStatus")["finding"].lower()
    chain = first("cert_chain_of_trust")
    trust = first("cert_trust")
    keysize = first("cert_keySize")["finding"]
    # testssl 3.0 has no client-auth check of its own; it says so where a
    # client certificate request stops a test.
    client_auth = any("client x509-based authentication" in (it.get("finding") or "") for it in items)
    fb = first("fallback_SCSV")["finding"]
    anull = first("cipherlist_aNULL")["finding"]
    return {
        "protocols": protos,
        "ciphers": ciphers,
        "expired": "expired" in exp,
        "trusted": chain["finding"].startswith("passed"),
        "name_match": trust["severity"] in ("OK", "INFO") and "does not match" not in trust["finding"].lower(),
        "self_signed": "self signed" in chain["finding"].lower() or "self-signed" in chain["finding"].lower(),
        "key": keysize or "-",
        "client_auth_required": client_auth,
        "anon_suites": ("offered" in anull and "not offered" not in anull) if anull else "n/a",
        "secure_renegotiation": first("secure_renego")["finding"].startswith("supported"),
        "fallback_scsv": "n/a" if "no protocol below" in fb or not fb else fb.startswith("supported"),
        "scan_time": first("scanTime")["finding"],
    }


def load_sslscan(path):
    try:
        root = ET.parse(path).getroot()
    except Exception:
        return None
    t = root.find("ssltest")
    if t is None:
        return None
    names = {("ssl", "3"): "SSLv3", ("tls", "1.0"): "TLS1.0", ("tls", "1.1"): "TLS1.1", ("tls", "1.2"): "TLS1.2", ("tls", "1.3"): "TLS1.3"}
    protos = {names[(p.get("type"), p.get("version"))] for p in t.findall("protocol")
              if p.get("enabled") == "1" and (p.get("type"), p.get("version")) in names}
    ciphers = {int(c.get("id"), 16) for c in t.findall("cipher")}
    reneg = t.find("renegotiation")
    cert = t.find("certificates/certificate")
    key, expired, self_signed = "-", None, None
    if cert is not None:
        pk = cert.find("pk")
        if pk is not None:
            key = f'{pk.get("type")} {pk.get("bits")}'
        expired = (cert.findtext("expired") or "") == "true"
        self_signed = (cert.findtext("self-signed") or "") == "true"
    return {"protocols": protos, "ciphers": ciphers, "expired": expired, "self_signed": self_signed, "key": key,
            "secure_renegotiation": (reneg.get("secure") == "1") if reneg is not None else "n/a"}


def fmt_set(s, hexa=False):
    if s is None:
        return "n/a"
    if hexa:
        return " ".join(f"{x:04x}" for x in sorted(s)) or "none"
    return " ".join(p for p in PROTOS if p in s) or "none"


def main():
    work, endpoints = sys.argv[1], sys.argv[2:]
    times = {}
    if os.path.exists(os.path.join(work, "times.txt")):
        for line in open(os.path.join(work, "times.txt")):
            f = line.split()
            times[f[0]] = f[1:]
    print()
    print("## Wall time per endpoint (seconds)")
    print(f'{"endpoint":<12} {"certctl":>8} {"testssl":>8} {"sslscan":>8}  certctl grade')
    tot = [0.0, 0.0, 0.0]
    data = {}
    for n in endpoints:
        c = load_certctl(os.path.join(work, n + ".certctl.json"))
        t = load_testssl(os.path.join(work, n + ".testssl.json"))
        s = load_sslscan(os.path.join(work, n + ".sslscan.xml"))
        data[n] = (c, t, s)
        ts = times.get(n, ["?", "?", "?"])
        for i in range(3):
            try:
                tot[i] += float(ts[i])
            except ValueError:
                pass
        print(f'{n:<12} {ts[0]:>8} {ts[1]:>8} {ts[2]:>8}  {c["grade"] if c else "n/a"}')
    print(f'{"total":<12} {tot[0]:>8.2f} {tot[1]:>8.2f} {tot[2]:>8.2f}')

    total_dis = 0
    for n in endpoints:
        c, t, s = data[n]
        print()
        print(f"## {n}")
        if c and c["error"]:
            print(f'  certctl error: {c["error"]}')
        dis = []
        print(f'  protocols  certctl: {fmt_set(c and c["protocols"])} | testssl: {fmt_set(t and t["protocols"])} | sslscan: {fmt_set(s and s["protocols"])}')
        for other, name in ((t, "testssl"), (s, "sslscan")):
            if c and other and c["protocols"] != other["protocols"]:
                dis.append(f'protocols: certctl {fmt_set(c["protocols"])} vs {name} {fmt_set(other["protocols"])}')
        print(f'  suites     certctl: {len(c["ciphers"]) if c else "n/a"} | testssl: {len(t["ciphers"]) if t else "n/a"} | sslscan: {len(s["ciphers"]) if s else "n/a"}')
        for other, name in ((t, "testssl"), (s, "sslscan")):
            if c and other and c["ciphers"] != other["ciphers"]:
                only_c, only_o = c["ciphers"] - other["ciphers"], other["ciphers"] - c["ciphers"]
                dis.append(f"suites: only certctl [{fmt_set(only_c, True)}], only {name} [{fmt_set(only_o, True)}]")
        for field in ("expired", "trusted", "name_match", "self_signed", "client_auth_required", "anon_suites",
                      "secure_renegotiation", "fallback_scsv", "key"):
            vals = [(x[field] if x is not None and field in x else "n/a") for x in (c, t, s)]
            print(f"  {field:<22} certctl: {vals[0]} | testssl: {vals[1]} | sslscan: {vals[2]}")
            if field == "key":
                continue
            for v, name in ((vals[1], "testssl"), (vals[2], "sslscan")):
                if vals[0] not in ("n/a", None) and v not in ("n/a", None) and v != vals[0]:
                    dis.append(f"{field}: certctl {vals[0]} vs {name} {v}")
        if c:
            print(f'  certctl findings: {" ".join(c["checks"]) or "none"}')
        for d in dis:
            print(f"  DISAGREE {d}")
        total_dis += len(dis)
    print()
    print(f"{total_dis} disagreements")


if __name__ == "__main__":
    main()
