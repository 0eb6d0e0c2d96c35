// Command shop is an app of three services in one program, declared with
// the SDK around the handlers of package examples/annotated/shop:
//
//   - web (simple, 2 replicas) is what clients call. GET and PUT
//     /cart/{user} go to carts; GET /find?q= asks catalog.
//   - carts (shard, 3 shards keyed by user) holds each user's cart on one
//     shard.
//   - catalog (scatter/gather, 4 leaves) holds a quarter of the products on
//     each leaf; the root concatenates their matches, and a leaf that fails
//     or is late is left out and named in Kiln-Missing, which web passes on.
//
// web reaches the others by name with sdk.App.Dial: no host, no port.
package main

import (
	"time"

	"github.com/kiln-dev/kiln/examples/annotated/shop"
	"github.com/kiln-dev/kiln/sdk"
	"github.com/kiln-dev/kiln/spec"
)

func main() {
	app := sdk.NewApp("shop")
	carts := app.Dial("carts")
	catalog := app.Dial("catalog")
	app.Service(spec.Service{
		Name:   "web",
		Simple: &spec.Simple{Replicas: 2},
	}, shop.NewWeb(carts, catalog))
	app.Service(spec.Service{
		Name:  "carts",
		Shard: &spec.Shard{Shards: 3, Key: spec.Key{PathSegment: 2}},
	}, shop.NewCarts())
	app.Service(spec.Service{
		Name: "catalog",
		Scatter: &spec.Scatter{
			Leaves:      4,
			Gather:      spec.GatherConcat,
			Timeout:     spec.Duration(500 * time.Millisecond),
			OnLeafError: spec.OnLeafErrorPartial,
		},
	}, shop.NewCatalog())
	app.Run()
}
