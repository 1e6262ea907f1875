#!/usr/bin/python3
"""AH oracle for the goipsec tests, built on scapy's SecurityAssociation.

Reads one JSON request per line on stdin and writes one JSON answer per
line on stdout:

  {"op": "seal"|"open", "alg": "<scapy name or AES-GMAC-128/192/256>",
   "key": "<hex>", "spi": N, "seq": N (low 32 bits), "esn_en": bool,
   "esn": N (high 32 bits), "tunnel": "<hex outer header template>" or "",
   "pkt": "<hex IP packet>"}

  -> {"ok": true, "pkt": "<hex>"} or {"ok": false, "err": "integrity"|"..."}

seal protects a cleartext packet (tunnel mode when "tunnel" is set); open
verifies and decapsulates an AH packet. scapy has no AES-GMAC for AH: it is
added here as an AuthAlgo that builds the RFC 4543 AH format with
cryptography's AESGCM (IV = 8 bytes at the start of the ICV field, then the
16-byte tag; GMAC over the packet as scapy's zero_mutable_fields leaves it,
the whole ICV field zeroed, the ESN high bits appended; nonce = salt || IV).
"""
import json
import struct
import sys

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from scapy.config import conf
from scapy.layers.inet import IP
from scapy.layers.inet6 import (IPv6, IPv6ExtHdrDestOpt, IPv6ExtHdrHopByHop,
                                IPv6ExtHdrRouting)
from scapy.layers.ipsec import (AH, AUTH_ALGOS, AuthAlgo, IPSecIntegrityError,
                                SecurityAssociation, zero_mutable_fields)
from scapy.packet import raw

conf.verb = 0


class GMAC(AuthAlgo):
    """AES-GMAC in AH (RFC 4543 section 4)."""

    IV = 8

    def __init__(self, name, key_size):
        super().__init__(name, mac=None, digestmod=None, icv_size=self.IV + 16)
        self.gmac_key_size = key_size

    def check_key(self, key):
        if len(key) != self.gmac_key_size + 4:
            raise TypeError("%s wants %d key bytes" % (self.name, self.gmac_key_size + 4))

    def _tag(self, key, iv, aad):
        return AESGCM(key[:-4]).encrypt(key[-4:] + iv, b"", aad)

    def sign(self, pkt, key, esn_en=False, esn=0):
        ah = pkt[AH]
        seq = (esn << 32 | ah.seq) if esn_en else ah.seq
        iv = struct.pack("!Q", seq)
        clone = zero_mutable_fields(pkt.copy(), sending=True)
        aad = raw(clone) + (struct.pack("!L", esn) if esn_en else b"")
        ah.icv = iv + self._tag(key, iv, aad)
        return pkt

    def verify(self, pkt, key, esn_en=False, esn=0):
        ah = pkt[AH]
        if len(ah.icv) != self.icv_size:
            ah.padding = ah.icv[self.icv_size:]
            ah.icv = ah.icv[:self.icv_size]
        iv, tag = ah.icv[:self.IV], ah.icv[self.IV:]
        clone = zero_mutable_fields(pkt.copy(), sending=False)
        aad = raw(clone) + (struct.pack("!L", esn) if esn_en else b"")
        try:
            AESGCM(key[:-4]).decrypt(key[-4:] + iv, tag, aad)
        except InvalidTag:
            raise IPSecIntegrityError("GMAC tag mismatch")


for bits in (128, 192, 256):
    name = "AES-GMAC-%d" % bits
    AUTH_ALGOS[name] = GMAC(name, bits // 8)

EXT = (IPv6ExtHdrHopByHop, IPv6ExtHdrDestOpt, IPv6ExtHdrRouting)


def parse(b):
    return IP(b) if b[0] >> 4 == 4 else IPv6(b)


def tunnel_header(b, inner_version):
    t = parse(b)
    if isinstance(t, IPv6):
        # The last extension header of the template must name the inner
        # packet, as scapy only fills in the IPv6 header's own next header.
        last = t
        while isinstance(last.payload, EXT):
            last = last.payload
        if last is not t:
            last.nh = 4 if inner_version == 4 else 41
    return t


def handle(req):
    key = bytes.fromhex(req["key"])
    pkt = bytes.fromhex(req["pkt"])
    tun = bytes.fromhex(req.get("tunnel") or "")
    sa = SecurityAssociation(
        AH, spi=req["spi"], seq_num=req.get("seq", 1),
        auth_algo=req["alg"], auth_key=key,
        tunnel_header=tunnel_header(tun, pkt[0] >> 4) if tun else None,
        esn_en=req.get("esn_en", False), esn=req.get("esn", 0))
    if req["op"] == "seal":
        out = sa.encrypt(parse(pkt))
    elif req["op"] == "open":
        out = sa.decrypt(parse(pkt))
    else:
        raise ValueError("unknown op %r" % req["op"])
    return {"ok": True, "pkt": raw(out).hex()}


def main():
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        try:
            ans = handle(json.loads(line))
        except IPSecIntegrityError:
            ans = {"ok": False, "err": "integrity"}
        except Exception as e:  # reported to the Go test, which fails on it
            ans = {"ok": False, "err": "%s: %s" % (type(e).__name__, e)}
        sys.stdout.write(json.dumps(ans) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
