// Package bench is the benchmark harness for the datapath.
//
// RunDatapath measures the datapath in process, without privileges: a
// matrix of transforms (ESP and AH) x packet sizes x goroutine counts x
// operations, each row reporting Gbit/s, Mpps, ns/packet, heap allocations
// per packet and process CPU time per byte, as the median, minimum and
// maximum of several timed repetitions, and its ratio to a ceiling: the
// bare cryptographic primitive measured in the same run, at the same size
// and goroutine count. The Report it returns writes itself as an aligned
// table, JSON, CSV or an SVG bar chart.
//
// How the figures are made:
//
//   - Packets are IPv4/UDP packets of the row's size (the inner, cleartext
//     packet), each in its own slot of a ring of distinct packets per
//     goroutine (about RingBytes of packets), with the dataplane's headroom
//     and tailroom around it. Sizes are cycled through for IMIX.
//   - seal runs tunnel-mode encapsulation (esp.SA.EncapTunnel,
//     ah.SA.EncapTunnel) in place over the ring again and again; sealing
//     the ciphertext of the previous round costs what sealing the packet
//     did.
//   - open runs DecapTunnel over a ring sealed once during the set-up with
//     consecutive sequence numbers, so that every packet opened is fresh
//     to the replay window. A timed pass opens each packet once; between
//     passes the ring is copied back from a pristine copy and the inbound
//     SA's window is reset, untimed. (The alternative, sealing and opening
//     pairs and subtracting the sealing, would subtract two noisy
//     figures.)
//   - pipeline runs dataplane.Engine.Encrypt (SPD lookup, SAD, sequence
//     number, ESP) then Engine.Decrypt (demultiplexing, SAD, replay window,
//     ESP, inbound policy check) on batches of 64 packets between two
//     engines, in place; the inner packets end where they started.
//   - own gives each goroutine its own SA pair (for the pipeline, its own
//     child in shared engines); shared puts all goroutines on one SA pair,
//     contending for its sequence counter and replay window.
//   - Ceilings are the primitives alone, in place, on the same rings:
//     AES-GCM and ChaCha20-Poly1305 Seal/Open with an 8-byte AAD, GMAC over
//     the packet, AES-CBC plus HMAC, or HMAC alone. The AEADs are the ones
//     ESP and AH use, from xform (AES-GCM and GMAC: internal/aesgcm), so a
//     row's ratio compares like with like; CBC and HMAC come from the
//     standard library. With Config.StdlibCeilings, crypto/cipher's AES-GCM
//     is measured beside them as a reference, never a ratio's base. A
//     pipeline row is compared with seal then open.
//
// The repetitions of a row and of its ceilings are interleaved (rep 1 of
// each, rep 2 of each, ...) so that a machine shared with other work
// disturbs both alike; the CPU-time ratio is steadier still than the
// wall-time ratio there. Allocations are runtime.MemStats.Mallocs deltas
// over each repetition, untimed restores included; the harness itself does
// not allocate while measuring, though the runtime now and then does (a
// new OS thread, say).
package bench
