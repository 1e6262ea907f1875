// Package sad is the Security Association Database: inbound SAs by SPI,
// outbound SAs per policy, lifetimes, counters and expiry events.
//
// # Entries and keys
//
// Each SA is unidirectional and holds its crypto engine (an Engine: *esp.SA,
// *ah.SA), its mode, the peer's endpoint, the owning ChildID, its lifetime
// and, if inbound, the Selector of the inbound policy check. Inbound SAs are
// found by protocol and SPI (DB.Inbound). Outbound SAs are found by child
// (DB.Outbound): an SPD PROTECT policy carries the ChildID of the child it
// is bound to, and the SAD maps that ChildID to the child's current
// outbound SA. A rekey (make-before-break) is Add of the new inbound SA,
// Replace of the outbound one (one atomic swap for lookups) and, after the
// overlap, Delete of the old inbound SA.
//
// # Concurrency
//
// Lookups are lock-free and do not allocate: each table is a hash table of
// atomically published, immutable bucket chains, copied on write under the
// database's mutex. Count, CountRun (a run of packets with one update of
// each counter), Drop, CheckInbound and UpdatePeer use atomics only. An SA removed from the tables (Delete, Replace, hard expiry) cannot
// be found by new lookups, but a packet that looked it up just before may
// still be using it: its engine is zeroed only after Options.Grace (2 s by
// default) by the sweep, so the dataplane must not keep an *SA for longer
// than one batch. Deleted and hard-expired SAs refuse packets at once
// (Count returns false); a replaced SA keeps working for packets in flight.
//
// # Lifetimes and events
//
// Byte and packet limits are checked by Count on the packet path; time
// limits and idleness by Sweep, which Run calls every SweepInterval with the
// clock of Options.Now. Each SoftExpire, HardExpire and Idle event is raised
// at most once per SA (Idle again after traffic resumed) and sent on the
// Events channel without blocking; if the channel is full the event is
// counted (DroppedEvents) and a later sweep raises it again, so no hard
// expiry is lost. Outbound SAs with 32-bit sequence numbers have their
// packet limits capped so that they are rekeyed and expire before the
// sequence number would cycle.
package sad
