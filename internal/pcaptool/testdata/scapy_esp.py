"""Independent ESP oracle for the pcaptool tests: scapy encrypts or decrypts
the packets of raw-IP (linktype 101) pcap files.

Reads a JSON list of jobs on stdin. Each job names an SA (spi, scapy
algorithm names, hex keys, esn, first 64-bit seq), a mode (tunnel header
addresses or transport), NAT-T ports, the operation ("encrypt" or
"decrypt"), and the input and output files. A job that fails leaves its
error in the output file's name plus ".err".
"""
import hashlib
import hmac
import struct

from scapy.layers.inet import IP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.ipsec import ESP, SecurityAssociation
from scapy.compat import raw

from scapy_pcap import parse, read_pcap, run_jobs, write_pcap


def ipv6_upper(b):
    """Walks the extension headers (Hop-by-Hop, Routing, Fragment,
    Destination Options) of IPv6 packet b: the next header after them, its
    offset, and the offset of the byte that names it."""
    nh, off, nh_off = b[6], 40, 6
    while nh in (0, 43, 44, 60):
        ln = 8 if nh == 44 else (b[off + 1] + 1) * 8
        nh, nh_off, off = b[off], off, off + ln
    return nh, off, nh_off


def strip_udp(b):
    """Turns an RFC 3948 packet (IP / UDP / ESP) into IP / ESP."""
    p = parse(b)
    if p.version == 4:
        hl = p.ihl * 4
        out = bytearray(b[:hl] + b[hl + 8:])
        out[9] = 50
        struct.pack_into("!H", out, 2, len(out))
        return fix4(out)
    # IPv6: the UDP header directly follows the extension headers we emit
    # in these tests.
    nh, off, nh_off = ipv6_upper(b)
    if nh != 17:
        raise ValueError("no UDP header")
    out = bytearray(b[:off] + b[off + 8:])
    out[nh_off] = 50
    struct.pack_into("!H", out, 4, len(out) - 40)
    return bytes(out)


# Scapy 2.5 applies ESN to AH only: for ESP with a separate integrity
# algorithm and ESN, these jobs compute and check the ICV here (RFC 4303
# section 2.2.1: the high-order 32 bits are appended, for the ICV only,
# after the trailer), and leave scapy the encryption.
HMACS = {
    "SHA2-256-128": (hashlib.sha256, 16),
    "SHA2-384-192": (hashlib.sha384, 24),
    "SHA2-512-256": (hashlib.sha512, 32),
    "HMAC-SHA1-96": (hashlib.sha1, 12),
    "HMAC-MD5-96": (hashlib.md5, 12),
}


def esp_offset(b):
    """Offset of the ESP header in an IP / [UDP /] ESP packet."""
    if b[0] >> 4 == 4:
        off, nh = (b[0] & 0xF) * 4, b[9]
    else:
        nh, off, _ = ipv6_upper(b)
    if nh == 17:
        off += 8
    return off


def fix_lengths(b):
    """Sets the IP (and UDP) lengths of b after its size changed."""
    b = bytearray(b)
    if b[0] >> 4 == 4:
        struct.pack_into("!H", b, 2, len(b))
        hl = (b[0] & 0xF) * 4
        if b[9] == 17:
            struct.pack_into("!H", b, hl + 4, len(b) - hl)
            struct.pack_into("!H", b, hl + 6, 0)
        return fix4(b)
    struct.pack_into("!H", b, 4, len(b) - 40)
    nh, off, _ = ipv6_upper(b)
    if nh == 17:
        struct.pack_into("!H", b, off + 4, len(b) - off)
    return bytes(b)


def fix_natt(b):
    """Works around two scapy 2.5 NAT-T bugs: over IPv4 it writes a UDP
    length of 8 (fix_lengths corrects it), and in IPv6 transport mode with
    extension headers the last one names ESP instead of UDP."""
    if b[0] >> 4 == 4:
        return b
    b = bytearray(b)
    nh, _, nh_off = ipv6_upper(b)
    if nh == 50:
        b[nh_off] = 17
    return bytes(b)


def n_icv(j):
    return HMACS[j["auth"]][1]


def esn_icv(j, esp_bytes):
    mod, n = HMACS[j["auth"]]
    mac = hmac.new(bytes.fromhex(j["akey"]), esp_bytes + struct.pack("!L", j["seq"] >> 32), mod)
    return mac.digest()[:n], n


def fix4(out):
    out[10:12] = b"\0\0"
    s = 0
    hl = (out[0] & 0xF) * 4
    for i in range(0, hl, 2):
        s += (out[i] << 8) | out[i + 1]
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    struct.pack_into("!H", out, 10, ~s & 0xFFFF)
    return bytes(out)


def main():
    run_jobs(run)


def run(j):
    kw = dict(
        spi=j["spi"],
        seq_num=j["seq"] & 0xFFFFFFFF,
        crypt_algo=j["crypt"],
        crypt_key=bytes.fromhex(j["ckey"]) if j["ckey"] else None,
        auth_algo=j["auth"] or None,
        auth_key=bytes.fromhex(j["akey"]) if j["akey"] else None,
        esn_en=j["esn"],
        esn=j["seq"] >> 32,
    )
    if j["tsrc"]:
        if ":" in j["tsrc"]:
            kw["tunnel_header"] = IPv6(src=j["tsrc"], dst=j["tdst"])
        else:
            kw["tunnel_header"] = IP(src=j["tsrc"], dst=j["tdst"])
    if j["sport"] and j["op"] == "encrypt":
        kw["nat_t_header"] = UDP(sport=j["sport"], dport=j["dport"])
    own_icv = j["esn"] and j["auth"] in HMACS
    if own_icv:
        kw["auth_algo"], kw["auth_key"] = None, None
    sa = SecurityAssociation(ESP, **kw)
    out = []
    seq = j["seq"]
    for b in read_pcap(j["in"]):
        if j["op"] == "encrypt":
            b = raw(sa.encrypt(parse(b)))
            if j["sport"]:
                b = fix_natt(b)
            if own_icv:
                icv, _ = esn_icv(dict(j, seq=seq), b[esp_offset(b):])
                b = b + icv
            out.append(fix_lengths(b))
            seq += 1
        else:
            if j["sport"]:
                b = strip_udp(b)
            if own_icv:
                off = esp_offset(b)
                icv, n = esn_icv(j, b[off:len(b) - n_icv(j)])
                if icv != b[len(b) - n:]:
                    raise ValueError("ESN ICV mismatch")
                b = fix_lengths(b[:len(b) - n])
            out.append(raw(sa.decrypt(parse(b))))
    write_pcap(j["out"], out)


if __name__ == "__main__":
    main()
