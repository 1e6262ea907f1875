package tun

import (
	"errors"
	"runtime"

	wgtun "golang.zx2c4.com/wireguard/tun"
)

// Device is a cleartext packet device with batch I/O: the interface of
// golang.zx2c4.com/wireguard/tun, re-exported so that users need only this
// package.
type Device = wgtun.Device

// Event is a device state change delivered on Device.Events.
type Event = wgtun.Event

// Device events.
const (
	EventUp        = wgtun.EventUp
	EventDown      = wgtun.EventDown
	EventMTUUpdate = wgtun.EventMTUUpdate
)

// MinWriteOffset is the headroom, in bytes, that a Linux kernel TUN with
// offloads needs in front of every packet given to Write (for its virtio-net
// header); the other devices accept any offset.
const MinWriteOffset = 10

// IdealBatchSize is the batch size the devices of this package are built
// for (wireguard-go's conn.IdealBatchSize).
const IdealBatchSize = 128

// ErrNotSupported is returned by the helpers that this operating system
// lacks.
var ErrNotSupported = errors.New("tun: not supported on " + runtime.GOOS)
