// Command kv is the shard pattern: an in-memory key-value store split over
// three shards. The router sends /kv/{key} to the shard that owns key. The
// store is package examples/annotated/kv's.
package main

import (
	"os"
	"strconv"

	"github.com/kiln-dev/kiln/examples/annotated/kv"
	"github.com/kiln-dev/kiln/sdk"
	"github.com/kiln-dev/kiln/spec"
)

func main() {
	// KV_SHARDS changes the shard count, to watch consistent hashing move
	// only about 1/N of the keys.
	shards := 3
	if n, err := strconv.Atoi(os.Getenv("KV_SHARDS")); err == nil {
		shards = n
	}
	sdk.Run(spec.Service{
		Name:  "kv",
		Shard: &spec.Shard{Shards: shards, Key: spec.Key{PathSegment: 2}},
	}, kv.New())
}
