// Package leases declares leases with //kiln:service options: a leader
// function under the service's own lease name, and a named lease alone.
package leases

import (
	"context"
	"net/http"
)

// Compact runs on one replica of compactor at a time.
func Compact(ctx context.Context, token uint64) error { return nil }

// New makes the compactor.
//
//kiln:service compactor simple replicas=3 lead=Compact lease-duration=5s
func New() http.Handler { return nil }

// NewIndex makes the index, whose shards take the lease "rebuild" with
// sdk.Lock and keep their part of it on volumes of their own.
//
//kiln:service index shard shards=2 key=path:2 lease=rebuild storage=5Gi storage-path=/var/lib/index storage-class=fast
func NewIndex() http.Handler { return nil }
