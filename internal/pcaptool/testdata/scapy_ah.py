"""Independent AH oracle for the pcaptool tests: scapy signs or verifies the
packets of raw-IP (linktype 101) pcap files.

Reads a JSON list of jobs on stdin. Each job names an SA (spi, scapy
algorithm name, hex key, esn, first 64-bit seq), a mode (tunnel header
addresses, or none for transport), the operation and the input and output
files:

  sign    scapy protects each packet of "in" (sequence numbers from seq)
          and writes the AH packets to "out";
  verify  scapy verifies each AH packet of "in" and writes the inner
          (tunnel) or AH-less (transport) packets to "out";
  reject  every AH packet of "in" must fail scapy's integrity check; "out"
          gets an empty capture.

A job that fails leaves its error in the output file's name plus ".err".

scapy 2.5 has no AES-GMAC for AH: it is added here as an AuthAlgo that
builds the RFC 4543 AH format with cryptography's AESGCM (IV = the 8-byte
sequence number at the start of the ICV field, then the 16-byte tag; GMAC
over the packet as scapy's zero_mutable_fields leaves it, the whole ICV
field zeroed, the ESN high bits appended; nonce = salt || IV).
"""
import struct

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from scapy.compat import raw
from scapy.config import conf
from scapy.layers.inet import IP
from scapy.layers.inet6 import IPv6
from scapy.layers.ipsec import (AH, AUTH_ALGOS, AuthAlgo, IPSecIntegrityError,
                                SecurityAssociation, zero_mutable_fields)

from scapy_pcap import parse, read_pcap, run_jobs, write_pcap

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

    @staticmethod
    def _aad(pkt, sending, esn_en, esn):
        clone = zero_mutable_fields(pkt.copy(), sending=sending)
        return raw(clone) + (struct.pack("!L", esn) if esn_en else b"")

    def sign(self, pkt, key, esn_en=False, esn=0):
        ah = pkt[AH]
        seq = (esn << 32 | ah.seq) if esn_en else ah.seq
        iv = struct.pack("!Q", seq)
        aad = self._aad(pkt, True, esn_en, esn)
        ah.icv = iv + AESGCM(key[:-4]).encrypt(key[-4:] + iv, b"", aad)
        return pkt

    def verify(self, pkt, key, esn_en=False, esn=0):
        ah = pkt[AH]
        if len(ah.icv) != self.icv_size:
            ah.padding = ah.icv[self.icv_size:]
            ah.icv = ah.icv[:self.icv_size]
        iv, tag = ah.icv[:self.IV], ah.icv[self.IV:]
        aad = self._aad(pkt, False, esn_en, esn)
        try:
            AESGCM(key[:-4]).decrypt(key[-4:] + iv, tag, aad)
        except InvalidTag:
            raise IPSecIntegrityError("GMAC tag mismatch")


for bits in (128, 192, 256):
    AUTH_ALGOS["AES-GMAC-%d" % bits] = GMAC("AES-GMAC-%d" % bits, bits // 8)


def main():
    run_jobs(run)


def run(j):
    kw = dict(
        spi=j["spi"],
        seq_num=j["seq"] & 0xFFFFFFFF,
        auth_algo=j["alg"],
        auth_key=bytes.fromhex(j["key"]),
        esn_en=j["esn"],
        esn=j["seq"] >> 32,
    )
    if j["tsrc"]:
        hdr = IPv6 if ":" in j["tsrc"] else IP
        kw["tunnel_header"] = hdr(src=j["tsrc"], dst=j["tdst"])
    sa = SecurityAssociation(AH, **kw)
    out = []
    for i, b in enumerate(read_pcap(j["in"])):
        if j["op"] == "sign":
            out.append(raw(sa.encrypt(parse(b))))
        elif j["op"] == "verify":
            out.append(raw(sa.decrypt(parse(b))))
        elif j["op"] == "reject":
            try:
                sa.decrypt(parse(b))
            except IPSecIntegrityError:
                continue
            raise ValueError("packet %d: tampered packet verified" % (i + 1))
        else:
            raise ValueError("unknown op %r" % j["op"])
    write_pcap(j["out"], out)


if __name__ == "__main__":
    main()
