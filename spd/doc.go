// Package spd is the Security Policy Database (RFC 4301): ordered policies
// with selectors and PROTECT, BYPASS or DISCARD actions, with a fast lookup.
//
// # Model
//
// A Policy has a Direction, a Priority, a Selector, an Action and, for
// Protect, a Ref: an opaque uint64 that the dataplane uses to find the SA
// (for instance the IKE child SA's ID). Policies of a direction form one
// ordered list, by Priority and then by insertion; the first that matches a
// packet decides, and unmatched traffic gets the DB's default action,
// Discard unless configured otherwise. Selectors are written from the local
// host's side: an outbound lookup matches Flow.Src against Local and
// Flow.Dst against Remote, an inbound one the other way round. Address lists
// hold prefixes and ranges of either family; an empty list is ANY. A
// selector that names ports (or ICMP type and code) does not match a flow
// whose ports are OPAQUE; ANY does.
//
// # Concurrency
//
// Lookups never lock: they load an immutable Snapshot through an atomic
// pointer. Writers (Add, Remove, Replace, Apply) are serialised by a mutex,
// build the next snapshot and publish it atomically; a Batch makes several
// changes visible at once, or none of them. A snapshot, once published,
// never changes, so a datapath may load one per batch of packets.
//
// # Lookup structure
//
// Per direction and address family the policies are compiled into a tuple
// space: each policy's address lists are cut into prefixes and each pair of
// prefix lengths (local, remote) used by some policy gets a hash table keyed
// by the masked address pair, whose entries hold the rules for that pair in
// policy order. A lookup probes the tables in order of the best rule each
// holds, keeping the best match so far, and stops when no remaining table can
// beat it; so it returns exactly what the ordered linear scan would, in a
// few hash probes for usual configurations, and without allocating. Updates
// copy only what they change (a hash table shard, its directory and the
// small structures above), so installing a policy costs microseconds even
// with 100,000 installed; large batches rebuild everything. Policies whose
// address ranges would cut into too many prefixes are matched by a short
// linear scan instead (the residue).
package spd
