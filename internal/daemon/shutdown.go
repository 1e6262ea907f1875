package daemon

import (
	"time"

	"go.uber.org/zap"
)

// ShutdownTimeout bounds how long stopping the daemon waits for the IKE
// SAs to be deleted (their DELETE notifications sent to the peers) before
// it closes the sockets regardless.
const ShutdownTimeout = 2 * time.Second

// deleteIKESAs deletes every IKE SA while the sockets are still open, so
// that the peers get a DELETE and remove their SAs at once instead of
// waiting for dead peer detection. The Manager sends the DELETEs without
// waiting for the answers; if sending takes longer than timeout, the
// daemon goes on stopping (closing the sockets unblocks the sends).
func (d *Daemon) deleteIKESAs(timeout time.Duration) {
	m := d.IKE()
	if m == nil {
		return
	}
	n := len(m.IKESAs())
	done := make(chan struct{})
	go func() {
		defer close(done)
		m.Close() // idempotent: stopIKE calls it again
	}()
	select {
	case <-done:
		if n > 0 {
			d.log.Info("IKE SAs deleted, peers notified", zap.Int("ike_sas", n))
		}
	case <-time.After(timeout):
		d.log.Warn("deleting the IKE SAs timed out; stopping anyway", zap.Duration("timeout", timeout))
	}
}
