// Package sad is the Security Association Database: inbound SAs by SPI,
// outbound SAs per policy, lifetimes, counters and expiry events.
package sad
