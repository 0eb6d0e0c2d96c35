package shop

import (
	"net/http"

	"github.com/kiln-dev/kiln/sdk"
)

// NewCarts is one shard of the carts; it asks catalog about prices.
//
//kiln:service carts shard shards=3 key=path:2
func NewCarts(catalog *sdk.Conn) http.Handler {
	_ = catalog
	return http.NotFoundHandler()
}
