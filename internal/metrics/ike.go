package metrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/goipsec/goipsec/ike"
)

// IKECounters counts the IKE Manager's events: it is the ike.Observer of
// the daemon's Manager and a prometheus.Collector. Its methods are safe
// for concurrent use and do not block.
type IKECounters struct {
	started, completed *prometheus.CounterVec // role
	failed, childFail  *prometheus.CounterVec // role, reason
	retried            *prometheus.CounterVec // reason
	rekeys             *prometheus.CounterVec // kind, role
	dead               prometheus.Counter
}

var _ ike.Observer = (*IKECounters)(nil)

func counterVec(name, help string, labels ...string) *prometheus.CounterVec {
	return prometheus.NewCounterVec(prometheus.CounterOpts{Name: "goipsec_" + name, Help: help}, labels)
}

// NewIKECounters returns the counters, each series that is known in
// advance present at zero.
func NewIKECounters() *IKECounters {
	c := &IKECounters{
		started: counterVec("ike_handshakes_started_total",
			"IKE handshakes (IKE_SA_INIT and IKE_AUTH) started, by our role (initiator or responder).", "role"),
		completed: counterVec("ike_handshakes_completed_total",
			"IKE handshakes that established an IKE SA, by our role.", "role"),
		failed: counterVec("ike_handshakes_failed_total",
			"IKE handshakes that failed, by our role and reason (authentication_failed, no_proposal_chosen, invalid_ke_payload, invalid_syntax, timeout, aborted, peer_error, other).", "role", "reason"),
		retried: counterVec("ike_handshake_retries_total",
			"IKE_SA_INIT requests sent again because the responder asked for another key exchange (invalid_ke_payload) or a cookie.", "reason"),
		childFail: counterVec("ike_child_sa_failures_total",
			"Child SA negotiations that failed on an IKE SA that stays, by our role and reason (ts_unacceptable, no_proposal_chosen, ...).", "role", "reason"),
		rekeys: counterVec("ike_rekeys_total",
			"Rekeys completed, by kind (ike or child) and our role (initiator or responder); a rekey collision counts both SAs made.", "kind", "role"),
		dead: prometheus.NewCounter(prometheus.CounterOpts{Name: "goipsec_ike_dpd_failures_total",
			Help: "Peers declared dead (no answer to a liveness check or another request of an established IKE SA); their SAs were deleted."}),
	}
	for _, r := range []string{"initiator", "responder"} {
		c.started.WithLabelValues(r)
		c.completed.WithLabelValues(r)
		c.rekeys.WithLabelValues(ike.RekeyIKE, r)
		c.rekeys.WithLabelValues(ike.RekeyChild, r)
	}
	return c
}

func roleName(initiator bool) string {
	if initiator {
		return "initiator"
	}
	return "responder"
}

// HandshakeStarted implements ike.Observer.
func (c *IKECounters) HandshakeStarted(initiator bool) {
	c.started.WithLabelValues(roleName(initiator)).Inc()
}

// HandshakeCompleted implements ike.Observer.
func (c *IKECounters) HandshakeCompleted(initiator bool) {
	c.completed.WithLabelValues(roleName(initiator)).Inc()
}

// HandshakeFailed implements ike.Observer.
func (c *IKECounters) HandshakeFailed(initiator bool, reason string) {
	c.failed.WithLabelValues(roleName(initiator), reason).Inc()
}

// HandshakeRetried implements ike.Observer.
func (c *IKECounters) HandshakeRetried(reason string) { c.retried.WithLabelValues(reason).Inc() }

// ChildSAFailed implements ike.Observer.
func (c *IKECounters) ChildSAFailed(initiator bool, reason string) {
	c.childFail.WithLabelValues(roleName(initiator), reason).Inc()
}

// Rekeyed implements ike.Observer.
func (c *IKECounters) Rekeyed(kind string, initiator bool) {
	c.rekeys.WithLabelValues(kind, roleName(initiator)).Inc()
}

// PeerDead implements ike.Observer.
func (c *IKECounters) PeerDead() { c.dead.Inc() }

func (c *IKECounters) collectors() []prometheus.Collector {
	return []prometheus.Collector{c.started, c.completed, c.failed, c.retried, c.childFail, c.rekeys, c.dead}
}

// Describe implements prometheus.Collector.
func (c *IKECounters) Describe(ch chan<- *prometheus.Desc) {
	for _, x := range c.collectors() {
		x.Describe(ch)
	}
}

// Collect implements prometheus.Collector.
func (c *IKECounters) Collect(ch chan<- prometheus.Metric) {
	for _, x := range c.collectors() {
		x.Collect(ch)
	}
}
