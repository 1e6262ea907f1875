#!/usr/bin/python3
"""ESP cross-check driver for esp/xcheck_test.go (TestScapyCrossCheck).

Usage: xcheck.py IN.json OUT.json

IN.json is {"cases": [...]}; every case names an SA (scapy algorithm names,
hex keys with any salt at the end, SPI, full 64-bit sequence number, ESN,
mode, outer IP version for tunnel mode, NAT-T) and a packet in hex:

  dir "encrypt": pkt is a plaintext IP packet; scapy encrypts it with the
                 given sequence number and IV and returns the wire packet.
  dir "decrypt": pkt is a wire packet made by goipsec; scapy decrypts it and
                 returns the plaintext packet, plus its own re-encryption of
                 that plaintext with the same sequence number and IV (so the
                 Go side can compare ESP bytes) and a check of the outer
                 lengths and checksums. expect_fail marks tampered packets.

OUT.json is {"scapy": version, "results": [...]} in the same order.

The crypto is scapy's scapy.layers.ipsec.SecurityAssociation (Debian's
python3-scapy), except for two things scapy cannot do, which this script does
with python3-cryptography and lists in each result's "fixups":

  * AES-GMAC (ENCR_NULL_AUTH_AES_GMAC, RFC 4543) does not exist in scapy: the
    "AES-GMAC" algorithm below builds it from AESGCM with an empty plaintext,
    AAD = SPI || [seq_hi ||] seq || IV || payload || padding || pad length ||
    next header, nonce = salt || IV.
  * scapy leaves the ESN high bits out of the ICV of separate integrity
    algorithms (HMAC); RFC 4303 section 2.2.1 puts them in the implicit
    trailer. With ESN and an HMAC, the ICV is computed (and verified) here
    with scapy's own HMAC object over ESP || seq_hi; scapy's unfixed packet is
    returned too ("native_wire") so the Go side can show the difference.

and works around scapy's framing bugs (each noted in "fixups" when it
changed a packet): the UDP length of IPv4 NAT-T packets (scapy writes 8),
the next header in front of the UDP header for IPv6 transport NAT-T with
extension headers (scapy leaves 50), and IPv6 transport NAT-T decryption
(scapy keeps the UDP header; the script removes it first, as RFC 3948
decapsulation does). Upstream fixed the ESN ICV (secdev/scapy#3908), the UDP
length (#4125) and the IPv6 NAT-T decryption (#4370) after 2.5.0; with a
newer scapy the first two fixups stop being counted.

Exit status 3 means scapy or cryptography is missing (the Go test skips).
"""

import json
import struct
import sys
import warnings

EXIT_SKIP = 3

TUNNEL4 = ("192.0.2.1", "198.51.100.2")
TUNNEL6 = ("2001:db8::1", "2001:db8::2")


def main():
    if len(sys.argv) != 3:
        sys.stderr.write(__doc__)
        return 2
    warnings.filterwarnings("ignore")  # 3DES / MD5 deprecation noise
    try:
        import scapy
        from scapy.config import conf
        import cryptography  # noqa: F401
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM  # noqa: F401
        import scapy.layers.ipsec  # noqa: F401
    except Exception as e:  # noqa: BLE001
        sys.stderr.write("scapy or python3-cryptography not importable: %r\n" % (e,))
        return EXIT_SKIP
    if not conf.crypto_valid:
        sys.stderr.write("scapy says python3-cryptography is unusable (conf.crypto_valid is False)\n")
        return EXIT_SKIP

    with open(sys.argv[1]) as f:
        cases = json.load(f)["cases"]
    x = XCheck()
    results = [x.run(c) for c in cases]
    with open(sys.argv[2], "w") as f:
        json.dump({"scapy": scapy.__version__, "results": results}, f)
    return 0


class XCheck(object):
    def __init__(self):
        from cryptography.exceptions import InvalidTag
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM
        from scapy.compat import raw
        from scapy.layers import ipsec
        from scapy.layers.inet import IP, UDP
        from scapy.layers.inet6 import (IPv6, IPv6ExtHdrDestOpt,
                                        IPv6ExtHdrHopByHop, IPv6ExtHdrRouting)

        self.ipsec, self.raw = ipsec, raw
        self.IP, self.IPv6, self.UDP = IP, IPv6, UDP
        self.ext6 = (IPv6ExtHdrHopByHop, IPv6ExtHdrDestOpt, IPv6ExtHdrRouting)

        class GMAC(ipsec.CryptAlgo):
            """ENCR_NULL_AUTH_AES_GMAC (RFC 4543) with AESGCM: nothing is
            encrypted, the whole ESP packet (with the ESN high bits after the
            SPI) is the AAD of an empty message."""

            def __init__(self):
                ipsec.CryptAlgo.__init__(self, "AES-GMAC", cipher=None, mode=None,
                                         block_size=4, iv_size=8, key_size=(16, 24, 32),
                                         icv_size=16, salt_size=4)

            @staticmethod
            def _hdr(esp, esn_en, esn):
                if esn_en:
                    return struct.pack("!LLL", esp.spi, esn, esp.seq)
                return struct.pack("!LL", esp.spi, esp.seq)

            def encrypt(self, sa, esp, key, icv_size=None, esn_en=False, esn=0):
                body = esp.data_for_encryption()
                aad = self._hdr(esp, esn_en, esn) + esp.iv + body
                tag = AESGCM(key).encrypt(sa.crypt_salt + esp.iv, b"", aad)
                return ipsec.ESP(spi=esp.spi, seq=esp.seq, data=esp.iv + body + tag)

            def decrypt(self, sa, esp, key, icv_size=None, esn_en=False, esn=0):
                iv, body, tag = esp.data[:8], esp.data[8:-16], esp.data[-16:]
                aad = self._hdr(esp, esn_en, esn) + iv + body
                try:
                    AESGCM(key).decrypt(sa.crypt_salt + iv, tag, aad)
                except InvalidTag as err:
                    raise ipsec.IPSecIntegrityError(err)
                padlen, nh = body[-2], body[-1]
                data = body[:len(body) - padlen - 2]
                return ipsec._ESPPlain(spi=esp.spi, seq=esp.seq, iv=iv, data=data,
                                       padding=body[len(data):-2], padlen=padlen,
                                       nh=nh, icv=tag)

        ipsec.CRYPT_ALGOS["AES-GMAC"] = GMAC()

    # -- helpers -----------------------------------------------------------

    def parse(self, b):
        return self.IP(b) if b[0] >> 4 == 4 else self.IPv6(b)

    def sa(self, c):
        kw = dict(spi=c["spi"], crypt_algo=c["crypt"], esn_en=c["esn"], esn=c["seq"] >> 32)
        if c["ckey"]:
            kw["crypt_key"] = bytes.fromhex(c["ckey"])
        if c.get("auth"):
            kw["auth_algo"] = c["auth"]
            kw["auth_key"] = bytes.fromhex(c["akey"])
        if c["mode"] == "tunnel":
            if c["outer"] == 4:
                kw["tunnel_header"] = self.IP(src=TUNNEL4[0], dst=TUNNEL4[1])
            else:
                kw["tunnel_header"] = self.IPv6(src=TUNNEL6[0], dst=TUNNEL6[1])
        if c["natt"]:
            kw["nat_t_header"] = self.UDP(sport=4500, dport=4500)
        return self.ipsec.SecurityAssociation(self.ipsec.ESP, **kw)

    def esn_hmac(self, sa, c):
        """True when RFC 4303 wants the ESN high bits in an HMAC ICV, which
        scapy leaves out."""
        return c["esn"] and sa.auth_algo.mac is not None

    def rfc_icv(self, sa, c, esp_wo_icv):
        """The RFC 4303 ICV of a separate integrity algorithm: HMAC over the
        ESP packet and, with ESN, the high 32 bits of the sequence number
        (section 2.2.1, 3.3.2.2), with scapy's HMAC object."""
        mac = sa.auth_algo.new_mac(sa.auth_key)
        mac.update(esp_wo_icv)
        if c["esn"]:
            mac.update(struct.pack("!L", c["seq"] >> 32))
        return mac.finalize()[:sa.auth_algo.icv_size]

    def encrypt(self, sa, c, pkt, iv, fixups):
        """scapy's encryption of pkt, with the framing fixed where scapy
        gets it wrong. Returns (wire, esp_offset)."""
        e = sa.encrypt(pkt, seq_num=c["seq"] & 0xffffffff, iv=iv)
        if c["natt"]:
            u = e[self.UDP]
            if e.version == 4:
                # scapy serialises the IPv4 header with the bare UDP header
                # before ESP is appended, so the UDP length stays 8.
                if u.len is not None and u.len != 8 + len(e[self.ipsec.ESP]):
                    fixups.append("v4-natt-udp-length")
                u.len = None
            else:
                under = u.underlayer
                if isinstance(under, self.ext6) and under.nh != 17:
                    # split_for_transport set it to ESP; the UDP header
                    # goes in between, so it must say UDP.
                    fixups.append("v6-natt-ext-next-header")
                    under.nh = 17
        wire = self.raw(e)
        return wire, len(wire) - len(self.raw(e[self.ipsec.ESP]))

    # -- cases -------------------------------------------------------------

    def run(self, c):
        r = {"id": c["id"], "ok": False, "err": "", "fixups": []}
        try:
            if c["dir"] == "encrypt":
                self.run_encrypt(c, r)
            else:
                self.run_decrypt(c, r)
            r["ok"] = True
        except self.ipsec.IPSecIntegrityError as e:
            r["err"] = "integrity: %s" % (e,)
        except Exception as e:  # noqa: BLE001 - reported to the Go side
            r["err"] = "%s: %s" % (type(e).__name__, e)
        return r

    def run_encrypt(self, c, r):
        sa = self.sa(c)
        pkt = self.parse(bytes.fromhex(c["pkt"]))
        wire, off = self.encrypt(sa, c, pkt, bytes.fromhex(c["iv"]), r["fixups"])
        if self.esn_hmac(sa, c):
            n = sa.auth_algo.icv_size
            icv = self.rfc_icv(sa, c, wire[off:-n])
            if icv != wire[-n:]:
                r["fixups"].append("esn-hmac-icv")
                r["native_wire"] = wire.hex()
                wire = wire[:-n] + icv
        r["wire"] = wire.hex()
        r["esp_off"] = off

    def run_decrypt(self, c, r):
        sa = self.sa(c)
        wire = bytes.fromhex(c["pkt"])
        p = self.parse(wire)
        ESP = self.ipsec.ESP
        if ESP not in p:
            raise ValueError("scapy finds no ESP layer in %r" % (p,))
        r["hdr_ok"], want = self.headers_ok(p, wire)
        if not r["hdr_ok"]:
            r["hdr_want"] = want.hex()
        esp = self.raw(p[ESP])
        iv = esp[8:8 + sa.crypt_algo.iv_size]
        if c["natt"] and c["mode"] == "transport" and p.version == 6:
            # scapy's transport decryption sets "nh" on the layer under ESP,
            # which is the UDP header here, and keeps that header: decapsulate
            # as RFC 3948 section 3.2 says, then decrypt plain ESP.
            u = p[self.UDP]
            under = u.underlayer
            under.remove_payload()
            under.nh = 50
            p.plen = None
            p = self.IPv6(self.raw(p / ESP(esp)))
            r["fixups"].append("v6-natt-transport-decap")
        if self.esn_hmac(sa, c):
            # scapy 2.5 leaves the ESN high bits out of the HMAC, so its check
            # would pass an ICV without them: require the RFC 4303 ICV.
            n = sa.auth_algo.icv_size
            if self.rfc_icv(sa, c, esp[:-n]) != esp[-n:]:
                raise self.ipsec.IPSecIntegrityError("RFC 4303 ICV with ESN high bits does not match")
        try:
            d = sa.decrypt(p.copy())
        except self.ipsec.IPSecIntegrityError:
            if not self.esn_hmac(sa, c):
                raise
            r["fixups"].append("esn-hmac-icv")  # checked above
            d = sa.decrypt(p, verify=False)
        plain = self.raw(d)
        r["plain"] = plain.hex()
        # scapy's own encryption of the result with the same sequence number
        # and IV: the ESP bytes must match goipsec's.
        re, off = self.encrypt(self.sa(c), c, self.parse(plain), iv, [])
        if self.esn_hmac(sa, c):
            n = sa.auth_algo.icv_size
            re = re[:-n] + self.rfc_icv(sa, c, re[off:-n])
        r["reenc_esp"] = re[off:].hex()

    def headers_ok(self, p, wire):
        """Reserialise the outer headers with lengths and checksums left to
        scapy: goipsec's must be the same (the IPv4 UDP checksum stays as
        sent: zero is what RFC 3948 section 2.1 asks for)."""
        q = p.copy()
        if q.version == 4:
            del q.len
            del q.chksum
        else:
            del q.plen
        if self.UDP in q:
            del q[self.UDP].len
            if q.version == 6:
                del q[self.UDP].chksum
        want = self.raw(q)
        return want == wire, want


if __name__ == "__main__":
    sys.exit(main())
