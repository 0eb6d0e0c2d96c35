// Command kvstore is the shard pattern with storage: a key-value store
// split over three shards, each keeping its keys on a volume of its own,
// so that a shard that restarts, or an app run again, still has them. The
// store is package examples/annotated/kvstore's.
package main

import (
	"os"
	"strconv"

	"github.com/kiln-dev/kiln/examples/annotated/kvstore"
	"github.com/kiln-dev/kiln/sdk"
	"github.com/kiln-dev/kiln/spec"
)

func main() {
	// KV_SHARDS changes the shard count: each shard then hands the keys
	// it no longer owns over to their new shard.
	shards := 3
	if n, err := strconv.Atoi(os.Getenv("KV_SHARDS")); err == nil {
		shards = n
	}
	app := sdk.NewApp("kvstore")
	self := app.Dial("kvstore")
	app.Service(spec.Service{
		Name:    "kvstore",
		Shard:   &spec.Shard{Shards: shards, Key: spec.Key{PathSegment: 2}},
		Storage: &spec.Storage{Size: "1Gi"},
	}, kvstore.New(self))
	app.Run()
}
