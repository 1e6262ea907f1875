//go:build !linux

package bench

import (
	"context"
	"errors"
)

func runE2E(context.Context, *E2EConfig) (*E2EReport, error) {
	return nil, errors.New("bench e2e: needs Linux (network namespaces, veth, TUN)")
}
