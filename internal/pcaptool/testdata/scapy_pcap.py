"""What the scapy oracles of the pcaptool tests (scapy_esp.py, scapy_ah.py)
share: raw-IP (linktype 101) pcap files, packet parsing and the job loop.
They import it from their own directory.
"""
import json
import struct
import sys

from scapy.layers.inet import IP
from scapy.layers.inet6 import IPv6


def read_pcap(path):
    """The packets of a little-endian raw-IP pcap file."""
    with open(path, "rb") as f:
        data = f.read()
    magic, = struct.unpack("<I", data[:4])
    if magic not in (0xA1B2C3D4, 0xA1B23C4D):
        raise ValueError("%s: not a little-endian pcap" % path)
    linktype, = struct.unpack("<I", data[20:24])
    if linktype != 101:
        raise ValueError("%s: link type %d, want 101" % (path, linktype))
    off, out = 24, []
    while off < len(data):
        _, _, caplen, _ = struct.unpack("<IIII", data[off:off + 16])
        off += 16
        out.append(data[off:off + caplen])
        off += caplen
    return out


def write_pcap(path, pkts):
    """Writes pkts as a raw-IP pcap file."""
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, 101))
        for i, p in enumerate(pkts):
            f.write(struct.pack("<IIII", 1700000000, i, len(p), len(p)))
            f.write(p)


def parse(b):
    """b as scapy's IP or IPv6 packet."""
    return IP(b) if b[0] >> 4 == 4 else IPv6(b)


def run_jobs(run):
    """Calls run on each job of the JSON list on stdin; a job that fails
    leaves its error in its output file's name plus ".err"."""
    jobs = json.load(sys.stdin)
    for j in jobs:
        try:
            run(j)
        except Exception as e:  # reported per job by the Go test
            with open(j["out"] + ".err", "w") as f:
                f.write("%s: %s" % (type(e).__name__, e))
