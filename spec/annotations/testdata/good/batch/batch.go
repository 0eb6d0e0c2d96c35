// Package batch is a job, a cron job, and the serving service they sit
// beside.
//
//kiln:app ops
package batch

import (
	"context"
	"net/http"
)

// New serves.
//
//kiln:service web simple replicas=1
func New() http.Handler { return http.NotFoundHandler() }

// Migrate runs once per completion index.
//
//kiln:job migrate completions=5 parallelism=2 retries=3 deadline=10m
func Migrate(ctx context.Context) error { return nil }

// Report runs every five minutes.
//
//kiln:cron report schedule="*/5 * * * *" time-zone=Europe/Paris concurrency=forbid starting-deadline=30s suspend retries=1
func Report(ctx context.Context) error { return nil }

// Nightly is a cron job with every default.
//
//kiln:cron nightly schedule=@daily
func Nightly(ctx context.Context) error { return nil }
